package record

import (
	"context"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

var created = time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)

// scaledTo is StatefulSet pg at replicas, and set pg-abc of a scale from 3 to
// 2, taken through the scale subresource: its record is pending.
func scaledTo(t *testing.T, replicas int32) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = snapv1.AddToScheme(s)
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg", UID: "uid-1"}, Spec: appsv1.StatefulSetSpec{Replicas: ptr.To(replicas)}}
	pvc := "data-pg-2"
	vs := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data-pg-2-abc", CreationTimestamp: metav1.Time{Time: created},
			Labels: map[string]string{snapshotter.LabelSet: "pg-abc", snapshotter.LabelStatefulSet: "pg", snapshotter.LabelManagedBy: snapshotter.ManagedBy},
			Annotations: map[string]string{snapshotter.AnnotationRecordPending: "true", snapshotter.AnnotationReplicasAfter: "2",
				snapshotter.AnnotationStatefulSetUID: "uid-1", snapshotter.AnnotationReason: "scale-down"}},
		Spec: snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(sts, vs).Build()
}

func reconcileSet(t *testing.T, r *Recorder) reconcile.Result {
	t.Helper()
	res, err := r.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "pg-abc"}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func recorded(t *testing.T, c client.Client) (map[string]string, bool) {
	t.Helper()
	var sts appsv1.StatefulSet
	var vs snapv1.VolumeSnapshot
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "pg"}, &sts); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "data-pg-2-abc"}, &vs); err != nil {
		t.Fatal(err)
	}
	_, pending := vs.Annotations[snapshotter.AnnotationRecordPending]
	return sts.Annotations, pending
}

func TestAStoredScaleIsRecordedOnItsStatefulSet(t *testing.T) {
	c := scaledTo(t, 2)
	reconcileSet(t, &Recorder{Client: c, Reader: c, Clock: clocktesting.NewFakePassiveClock(created)})
	ann, pending := recorded(t, c)
	if ann[policy.LastSet] != "pg-abc" || ann[policy.LastSnapshots] != `{"data-pg-2":"data-pg-2-abc"}` || ann[policy.LastReason] != "scale-down" || pending {
		t.Fatalf("record %v, still pending %v; want set pg-abc recorded and the mark cleared", ann, pending)
	}
}

// A scale not stored (yet) is waited for by a requeue, and after the grace
// never recorded: a change that never landed has no record.
func TestAScaleNeverStoredIsNotRecorded(t *testing.T) {
	c := scaledTo(t, 3)
	clk := clocktesting.NewFakePassiveClock(created.Add(time.Second))
	r := &Recorder{Client: c, Reader: c, Grace: time.Minute, Clock: clk}
	if res := reconcileSet(t, r); res.RequeueAfter == 0 {
		t.Fatal("a scale not stored yet was not waited for")
	}
	if ann, pending := recorded(t, c); ann[policy.LastSet] != "" || !pending {
		t.Fatalf("within the grace: record %v, pending %v; want nothing recorded yet", ann, pending)
	}
	clk.SetTime(created.Add(2 * time.Minute))
	if res := reconcileSet(t, r); !res.IsZero() {
		t.Fatalf("after the grace: %+v; want done", res)
	}
	if ann, pending := recorded(t, c); ann[policy.LastSet] != "" || pending {
		t.Fatalf("after the grace: record %v, pending %v; want no record and the mark cleared", ann, pending)
	}
}
