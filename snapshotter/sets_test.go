package snapshotter

import (
	"context"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
)

func TestListSetsGroupsByLabelNewestGenerationFirst(t *testing.T) {
	same := metav1.NewTime(time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC))
	snap := func(name, set, pvc, gen string, ready bool, size string) client.Object {
		vs := &snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, CreationTimestamp: same,
				Labels:      map[string]string{LabelSet: set, LabelStatefulSet: "pg", LabelManagedBy: ManagedBy},
				Annotations: map[string]string{AnnotationGeneration: gen, AnnotationReason: "template"}},
			Spec:   snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
			Status: &snapv1.VolumeSnapshotStatus{ReadyToUse: &ready},
		}
		if size != "" {
			q := resource.MustParse(size)
			vs.Status.RestoreSize = &q
		}
		return vs
	}
	c := fake.NewClientBuilder().WithScheme(scheme()).WithObjects(
		snap("a0", "pg-aaaa", "data-pg-0", "9", true, "1Gi"),
		snap("a1", "pg-aaaa", "data-pg-1", "9", true, "1Gi"),
		snap("b0", "pg-bbbb", "data-pg-0", "10", false, ""),
		func() client.Object { // another StatefulSet's snapshot
			o := snap("other", "web-cccc", "data-web-0", "99", true, "")
			o.GetLabels()[LabelStatefulSet] = "web"
			return o
		}(),
	).Build()
	sets, err := ListSets(context.Background(), PerPVC{Snapshots: c}, "db", "pg")
	if err != nil {
		t.Fatal(err)
	}
	// web's snapshot carries another statefulset label, so only pg's two sets.
	if len(sets) != 2 {
		t.Fatalf("sets = %+v", sets)
	}
	if sets[0].Name != "pg-bbbb" || sets[1].Name != "pg-aaaa" {
		t.Fatalf("order = %s, %s; want generation 10 before 9 when creation times tie", sets[0].Name, sets[1].Name)
	}
	a := sets[1]
	if a.Snapshots != 2 || a.Ready != 2 || a.Size.String() != "2Gi" || a.Snapshot["data-pg-1"] != "a1" {
		t.Fatalf("set a = %+v", a)
	}
}

// TestAReadySnapshotWithAnErrorHasNotFailed: the snapshot controller writes
// status.error on a ready snapshot whose class was deleted ("Failed to get
// snapshot class"); the snapshot still restores, and a set called failed
// would be pruned. A snapshot not ready with the driver's error has failed.
func TestAReadySnapshotWithAnErrorHasNotFailed(t *testing.T) {
	snap := func(name, set string, ready bool, msg string) client.Object {
		pvc := "data-pg-0"
		return &snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name,
				Labels: map[string]string{LabelSet: set, LabelStatefulSet: "pg", LabelManagedBy: ManagedBy}},
			Spec: snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
			Status: &snapv1.VolumeSnapshotStatus{ReadyToUse: &ready,
				Error: &snapv1.VolumeSnapshotError{Message: &msg}},
		}
	}
	c := fake.NewClientBuilder().WithScheme(scheme()).WithObjects(
		snap("a0", "pg-aaaa", true, `Failed to get snapshot class with error volumesnapshotclasses.snapshot.storage.k8s.io "fast" not found`),
		snap("b0", "pg-bbbb", false, "quota exceeded"),
	).Build()
	sets, err := ListSets(context.Background(), PerPVC{Snapshots: c}, "db", "pg")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]SetInfo{}
	for _, s := range sets {
		got[s.Name] = s
	}
	if a := got["pg-aaaa"]; a.Failed != "" || a.Ready != 1 {
		t.Fatalf("ready set with a controller error = %+v; want ready, not failed", a)
	}
	if b := got["pg-bbbb"]; b.Failed != "b0: quota exceeded" {
		t.Fatalf("unready set with the driver's error = %+v; want failed with its message", b)
	}
}
