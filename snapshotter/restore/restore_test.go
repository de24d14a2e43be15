package restore

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/snapgate/snapgate/snapshotter"
)

// world is namespace db with set pg-abc (one ready snapshot of data-pg-0,
// whose template needs Secret pg-secret) and an empty namespace check.
func world(t *testing.T, objs ...client.Object) client.WithWatch {
	t.Helper()
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = snapv1.AddToScheme(s)
	tmpl, _ := json.Marshal(corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:15",
		Env: []corev1.EnvVar{{Name: "POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: "pg-secret"}, Key: "password"}}}}}}}})
	spec, _ := json.Marshal(corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}})
	pvc, ready, contentName, handle := "data-pg-0", true, "snapcontent-1", "snap-1"
	objs = append(objs,
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "db"}}, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "check"}},
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg-secret"}},
		&snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data-pg-0-abc", UID: "vs-1",
				Labels: map[string]string{snapshotter.LabelSet: "pg-abc", snapshotter.LabelStatefulSet: "pg", snapshotter.LabelOrdinal: "0",
					snapshotter.LabelClaim: "data", snapshotter.LabelManagedBy: snapshotter.ManagedBy},
				Annotations: map[string]string{snapshotter.AnnotationPodTemplate: string(tmpl), snapshotter.AnnotationPVCSpec: string(spec)}},
			Spec:   snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
			Status: &snapv1.VolumeSnapshotStatus{ReadyToUse: &ready, BoundVolumeSnapshotContentName: &contentName},
		},
		&snapv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: contentName},
			Spec:   snapv1.VolumeSnapshotContentSpec{Driver: "hostpath.csi.snapgate.io", DeletionPolicy: snapv1.VolumeSnapshotContentDelete},
			Status: &snapv1.VolumeSnapshotContentStatus{SnapshotHandle: &handle}},
	)
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithStatusSubresource(&snapv1.VolumeSnapshot{}).Build()
}

var intoCheck = types.NamespacedName{Namespace: "check", Name: "pg"}

func TestPlanRefusesWhatExistsAndWhatThePodsLack(t *testing.T) {
	ctx := context.Background()
	if _, err := Plan(ctx, world(t), "pg-abc", "db", intoCheck); err == nil ||
		!strings.Contains(err.Error(), "the copy's pods need what namespace check does not have: secret pg-secret (env POSTGRES_PASSWORD of container db)") {
		t.Errorf("a copy whose Secret is not in its namespace: %v", err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "check", Name: "pg-secret"}}
	for name, tc := range map[string]struct {
		obj  client.Object
		want string
	}{
		"its PVC":         {&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "check", Name: "data-pg-0"}}, "PVC check/data-pg-0 exists"},
		"its snapshot":    {&snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "check", Name: "data-pg-0"}}, "volumesnapshot check/data-pg-0 exists"},
		"the StatefulSet": {&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "check", Name: "pg"}}, "statefulset check/pg exists; a restore never overwrites"},
	} {
		if _, err := Plan(ctx, world(t, secret, tc.obj), "pg-abc", "db", intoCheck); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s is there: %v; want %q", name, err, tc.want)
		}
	}
	// A PV that Kubernetes would bind the copy's PVC to in place of the snapshot.
	stray := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "stray"},
		Spec: corev1.PersistentVolumeSpec{Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable}}
	if _, err := Plan(ctx, world(t, secret, stray), "pg-abc", "db", intoCheck); err == nil ||
		!strings.Contains(err.Error(), "the copy's PVCs would not hold their snapshots' data: PV stray") || !strings.Contains(err.Error(), "then restore again") {
		t.Errorf("an Available PV would take the copy's PVC: %v", err)
	}
	if _, err := Plan(ctx, world(t), "pg-abc", "db", types.NamespacedName{Namespace: "nowhere", Name: "pg"}); err == nil || !strings.Contains(err.Error(), "namespace nowhere") {
		t.Errorf("into a namespace that does not exist: %v", err)
	}
}

// Create carries the snapshot, waits until the snapshot controller says the
// copy is ready, and only then creates the PVC that restores from it; Delete
// removes all of it and leaves the original alone.
func TestCreateWaitsForTheCarriedSnapshotThenDeleteRemovesTheCopy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c := world(t, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: "check", Name: "pg-secret"}})
	cp, err := Plan(ctx, c, "pg-abc", "db", intoCheck)
	if err != nil {
		t.Fatal(err)
	}
	w := Waiter{Snapshots: c, Changes: snapshotter.NewTracker()}
	var told []string
	done := make(chan error, 1)
	go func() { done <- Create(ctx, c, w, cp, func(s string) { told = append(told, s) }) }()
	carried := client.ObjectKeyFromObject(cp.Carried[0].Snapshot)
	var vs snapv1.VolumeSnapshot
	for c.Get(ctx, carried, &vs) != nil {
		time.Sleep(10 * time.Millisecond)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(cp.Claims[0]), &corev1.PersistentVolumeClaim{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the PVC was created before its snapshot was ready: %v", err)
	}
	ready := true
	vs.Status = &snapv1.VolumeSnapshotStatus{ReadyToUse: &ready}
	if err := c.Status().Update(ctx, &vs); err != nil {
		t.Fatal(err)
	}
	w.Changes.Notify()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var pvc corev1.PersistentVolumeClaim
	if err := c.Get(ctx, client.ObjectKeyFromObject(cp.Claims[0]), &pvc); err != nil || pvc.Spec.DataSource.Name != carried.Name {
		t.Fatalf("PVC: %v, from %v", err, pvc.Spec.DataSource)
	}
	if err := c.Get(ctx, intoCheck, &appsv1.StatefulSet{}); err != nil {
		t.Fatal(err)
	}
	if len(told) != 2 || !strings.Contains(told[0], "a copy of snapshot db/data-pg-0-abc (deletion policy Retain)") {
		t.Errorf("told %q", told)
	}
	if err := Delete(ctx, c, cp); err != nil {
		t.Fatal(err)
	}
	for _, o := range objects(cp) {
		if err := c.Get(ctx, client.ObjectKeyFromObject(o), o); !apierrors.IsNotFound(err) {
			t.Errorf("%s after Delete: %v", describe(o), err)
		}
	}
	if err := c.Get(ctx, types.NamespacedName{Name: "snapcontent-1"}, &snapv1.VolumeSnapshotContent{}); err != nil {
		t.Errorf("the original's content: %v", err)
	}
}

// TestCreateRefusesAPVThatBecameAvailableAfterThePlan: Plan found no PV that
// would take the copy's PVC; one made before Create stops it before any PVC.
func TestCreateRefusesAPVThatBecameAvailableAfterThePlan(t *testing.T) {
	ctx := context.Background()
	c := world(t)
	into := types.NamespacedName{Namespace: "db", Name: "pg-copy"}
	cp, err := Plan(ctx, c, "pg-abc", "db", into)
	if err != nil {
		t.Fatal(err)
	}
	stray := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "stray"},
		Spec: corev1.PersistentVolumeSpec{Capacity: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable}}
	if err := c.Create(ctx, stray); err != nil {
		t.Fatal(err)
	}
	if err := Create(ctx, c, Waiter{}, cp, func(string) {}); err == nil || !strings.Contains(err.Error(), "PV stray") {
		t.Fatalf("Create with a PV that would take its PVC: %v", err)
	}
	if err := c.Get(ctx, client.ObjectKeyFromObject(cp.Claims[0]), &corev1.PersistentVolumeClaim{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the copy's PVC: %v; want none created", err)
	}
}
