package schedule

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
	"github.com/snapgate/snapgate/snapshotter/verify"
)

// fakeVerifier marks the set's snapshots as the Verifier does.
type fakeVerifier struct {
	c        client.Client
	clock    *clocktesting.FakePassiveClock
	verified []string
}

func (f *fakeVerifier) Verify(ctx context.Context, ns, set string, _ func(string)) (verify.Result, error) {
	f.verified = append(f.verified, set)
	var list snapv1.VolumeSnapshotList
	if err := f.c.List(ctx, &list, client.InNamespace(ns), client.MatchingLabels{snapshotter.LabelSet: set}); err != nil {
		return verify.Result{}, err
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		snapshotter.AnnotationVerified: snapshotter.VerifyPassed, snapshotter.AnnotationVerifiedAt: f.clock.Now().UTC().Format(time.RFC3339)}}})
	for i := range list.Items {
		if err := f.c.Patch(ctx, &list.Items[i], client.RawPatch(types.MergePatchType, patch)); err != nil {
			return verify.Result{}, err
		}
	}
	return verify.Result{Set: set, Passed: true}, nil
}

// addSet adds a set of pg's two replicas, ready or not, taken at taken.
func addSet(t *testing.T, c client.Client, name string, gen int, ready bool, taken time.Time) {
	t.Helper()
	for _, ord := range []string{"0", "1"} {
		vs := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data-pg-" + ord + "-" + name,
			Labels: map[string]string{snapshotter.LabelSet: name, snapshotter.LabelStatefulSet: "pg", snapshotter.LabelOrdinal: ord, snapshotter.LabelManagedBy: snapshotter.ManagedBy},
			Annotations: map[string]string{snapshotter.AnnotationStatefulSetUID: "uid-1", snapshotter.AnnotationGeneration: strconv.Itoa(gen),
				snapshotter.AnnotationTakenAt: taken.Format(time.RFC3339Nano)}}}
		if err := c.Create(context.Background(), vs); err != nil {
			t.Fatal(err)
		}
		// The world's driver readies every snapshot it creates; this one is as ready as asked.
		vs.Status = &snapv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(ready)}
		if err := c.Update(context.Background(), vs); err != nil {
			t.Fatal(err)
		}
	}
}

// On @daily, the newest ready set is verified once a day: a set not ready
// is passed over, and a second reconcile the same day verifies nothing.
func TestVerifyScheduleVerifiesTheNewestReadySetOncePerRun(t *testing.T) {
	c := world(t, "")
	var sts appsv1.StatefulSet
	if err := c.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "pg"}, &sts); err != nil {
		t.Fatal(err)
	}
	sts.Annotations = map[string]string{policy.Verify: "@daily"}
	if err := c.Update(context.Background(), &sts); err != nil {
		t.Fatal(err)
	}
	addSet(t, c, "pg-old", 1, true, at(1, 1, 0, 0))
	addSet(t, c, "pg-new", 2, true, at(1, 2, 0, 0))
	addSet(t, c, "pg-cut", 3, false, at(1, 3, 0, 0))
	clk := clocktesting.NewFakePassiveClock(at(2, 0, 10, 0))
	f := &fakeVerifier{c: c, clock: clk}
	rec := events.NewFakeRecorder(10)
	s := &VerifyScheduler{Client: c, Reader: c, Sets: snapshotter.PerPVC{Snapshots: c}, Verifier: f, Events: rec, Clock: clk}
	req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "pg"}}
	res, err := s.Reconcile(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(f.verified, ",") != "pg-new" || res.RequeueAfter != 23*time.Hour+50*time.Minute {
		t.Fatalf("verified %v, back in %s", f.verified, res.RequeueAfter)
	}
	clk.SetTime(at(2, 9, 0, 0))
	if _, err := s.Reconcile(context.Background(), req); err != nil || len(f.verified) != 1 {
		t.Fatalf("a second reconcile the same day verified %v (%v)", f.verified, err)
	}
	clk.SetTime(at(3, 0, 0, 30))
	if _, err := s.Reconcile(context.Background(), req); err != nil || strings.Join(f.verified, ",") != "pg-new,pg-new" {
		t.Fatalf("the next day verified %v (%v)", f.verified, err)
	}
}
