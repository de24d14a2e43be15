package follow

import (
	"context"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
)

var taken = time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)

// snapshot is one of the two snapshots of set pg-abc, taken at taken.
func snapshot(name string, waitFor string) *snapv1.VolumeSnapshot {
	vs := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name,
		Labels: map[string]string{snapshotter.LabelSet: "pg-abc", snapshotter.LabelStatefulSet: "pg", snapshotter.LabelManagedBy: snapshotter.ManagedBy},
		Annotations: map[string]string{snapshotter.AnnotationTakenAt: taken.Format(time.RFC3339Nano), snapshotter.AnnotationStatefulSetName: "pg",
			snapshotter.AnnotationStatefulSetUID: "uid-1"}},
		Status: &snapv1.VolumeSnapshotStatus{CreationTime: &metav1.Time{Time: taken}, ReadyToUse: ptr.To(false)},
	}
	if waitFor != "" {
		vs.Annotations[snapshotter.AnnotationWaitFor] = waitFor
	}
	return vs
}

type rig struct {
	cl     client.Client
	f      *Follower
	clock  *clocktesting.FakePassiveClock
	events *events.FakeRecorder
}

func newRig(t *testing.T, objs ...client.Object) *rig {
	t.Helper()
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = snapv1.AddToScheme(s)
	cl := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
	r := &rig{cl: cl, clock: clocktesting.NewFakePassiveClock(taken.Add(time.Minute)), events: events.NewFakeRecorder(10)}
	r.f = &Follower{Client: cl, ReadyDeadline: time.Hour, Events: r.events, Clock: r.clock}
	return r
}

func (r *rig) reconcile(t *testing.T) reconcile.Result {
	t.Helper()
	res, err := r.f.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "pg-abc"}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// update sets the status of the named snapshot, as the snapshot controller does.
func (r *rig) update(t *testing.T, name string, mutate func(*snapv1.VolumeSnapshotStatus)) {
	t.Helper()
	var vs snapv1.VolumeSnapshot
	if err := r.cl.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: name}, &vs); err != nil {
		t.Fatal(err)
	}
	mutate(vs.Status)
	if err := r.cl.Update(context.Background(), &vs); err != nil {
		t.Fatal(err)
	}
}

func (r *rig) told() []string {
	var out []string
	for {
		select {
		case e := <-r.events.Events:
			out = append(out, e)
		default:
			return out
		}
	}
}

func (r *rig) marks(t *testing.T) []string {
	t.Helper()
	var list snapv1.VolumeSnapshotList
	if err := r.cl.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, vs := range list.Items {
		out = append(out, vs.Annotations[snapshotter.AnnotationFollowed])
	}
	return out
}

func ready(s *snapv1.VolumeSnapshotStatus) { s.ReadyToUse = ptr.To(true) }

// TestASetAdmittedAtCutIsToldReadyOnce: a set admitted at cut is followed; when
// its last snapshot is ready it is told so, once, with how long it took.
func TestASetAdmittedAtCutIsToldReadyOnce(t *testing.T) {
	r := newRig(t, snapshot("data-pg-0-abc", "cut"), snapshot("data-pg-1-abc", "cut"))
	if res := r.reconcile(t); res.RequeueAfter != 59*time.Minute || len(r.told()) != 0 {
		t.Fatalf("a set cut a minute ago: requeue %s; want a look again at its ready deadline, nothing told", res.RequeueAfter)
	}
	r.update(t, "data-pg-0-abc", ready)
	r.reconcile(t)
	if got := r.told(); len(got) != 0 {
		t.Fatalf("told %v with one of two snapshots ready", got)
	}
	r.clock.SetTime(taken.Add(12 * time.Minute))
	r.update(t, "data-pg-1-abc", ready)
	r.reconcile(t)
	got := r.told()
	if len(got) != 1 || !strings.Contains(got[0], "Normal SnapshotSetReady Snapshot set pg-abc is ready (2 snapshots), 12m after it was taken") {
		t.Fatalf("told %v; want one SnapshotSetReady", got)
	}
	if m := r.marks(t); strings.Join(m, ",") != "ready,ready" {
		t.Fatalf("marks %v", m)
	}
	r.reconcile(t)
	if got := r.told(); len(got) != 0 {
		t.Fatalf("told again: %v", got)
	}
}

// TestASetAdmittedAtReadyIsNotToldReadyAgain: the Event of its taking said so.
func TestASetAdmittedAtReadyIsNotToldReadyAgain(t *testing.T) {
	a, b := snapshot("data-pg-0-abc", ""), snapshot("data-pg-1-abc", "")
	a.Status.ReadyToUse, b.Status.ReadyToUse = ptr.To(true), ptr.To(true)
	r := newRig(t, a, b)
	if res := r.reconcile(t); !res.IsZero() || len(r.told()) != 0 || strings.Join(r.marks(t), ",") != "," {
		t.Fatalf("a ready set taken at ready: %+v, told %v, marks %v; want nothing", res, r.told(), r.marks(t))
	}
}

// TestASetNotReadyByTheDeadlineIsToldOverdueThenReady: overdue is told once,
// with how far the set got and how to look; `snapgate list` reads the mark;
// when it gets ready after all, that is told too.
func TestASetNotReadyByTheDeadlineIsToldOverdueThenReady(t *testing.T) {
	r := newRig(t, snapshot("data-pg-0-abc", "cut"), snapshot("data-pg-1-abc", "cut"))
	r.update(t, "data-pg-0-abc", ready)
	r.clock.SetTime(taken.Add(61 * time.Minute))
	r.reconcile(t)
	got := r.told()
	if len(got) != 1 || !strings.Contains(got[0], "Warning SnapshotSetOverdue Snapshot set pg-abc is not ready 61m after it was taken (1 of 2 snapshots ready; ready deadline 1h0m0s)") ||
		!strings.Contains(got[0], "kubectl describe volumesnapshot -n db -l snapgate.io/set=pg-abc") {
		t.Fatalf("told %v; want one SnapshotSetOverdue", got)
	}
	sets, err := snapshotter.ListSets(context.Background(), snapshotter.PerPVC{Snapshots: r.cl}, "db", "pg")
	if err != nil || len(sets) != 1 || !sets[0].Overdue {
		t.Fatalf("sets %+v (%v); want pg-abc overdue", sets, err)
	}
	r.reconcile(t)
	if got := r.told(); len(got) != 0 {
		t.Fatalf("told again: %v", got)
	}
	r.update(t, "data-pg-1-abc", ready)
	r.reconcile(t)
	if got := r.told(); len(got) != 1 || !strings.Contains(got[0], "SnapshotSetReady") {
		t.Fatalf("told %v; want SnapshotSetReady after the overdue", got)
	}
	if sets, _ := snapshotter.ListSets(context.Background(), snapshotter.PerPVC{Snapshots: r.cl}, "db", "pg"); sets[0].Overdue {
		t.Fatal("a set ready after all is still listed overdue")
	}
}

// TestAFailedSnapshotIsToldOnceWithTheDriversMessage, whatever the set waited
// for; a transient conflict is not a failure.
func TestAFailedSnapshotIsToldOnceWithTheDriversMessage(t *testing.T) {
	r := newRig(t, snapshot("data-pg-0-abc", ""), snapshot("data-pg-1-abc", ""))
	r.update(t, "data-pg-1-abc", func(s *snapv1.VolumeSnapshotStatus) {
		s.Error = &snapv1.VolumeSnapshotError{Message: ptr.To("the object has been modified; please apply your changes to the latest version")}
	})
	r.reconcile(t)
	if got := r.told(); len(got) != 0 {
		t.Fatalf("a transient conflict was told: %v", got)
	}
	r.update(t, "data-pg-1-abc", func(s *snapv1.VolumeSnapshotStatus) {
		s.Error = &snapv1.VolumeSnapshotError{Message: ptr.To("quota exceeded")}
	})
	r.reconcile(t)
	r.reconcile(t)
	got := r.told()
	if len(got) != 1 || !strings.Contains(got[0], "Warning SnapshotSetFailed Snapshot set pg-abc cannot restore anything: snapshot data-pg-1-abc: quota exceeded") {
		t.Fatalf("told %v; want one SnapshotSetFailed with the driver's message", got)
	}
}

// TestAReadySetWhoseClassIsDeletedIsNotToldFailed: the snapshot controller
// writes "Failed to get snapshot class" on ready snapshots once their class is
// gone; they still restore.
func TestAReadySetWhoseClassIsDeletedIsNotToldFailed(t *testing.T) {
	r := newRig(t, snapshot("data-pg-0-abc", ""), snapshot("data-pg-1-abc", ""))
	for _, name := range []string{"data-pg-0-abc", "data-pg-1-abc"} {
		r.update(t, name, func(s *snapv1.VolumeSnapshotStatus) {
			ready(s)
			s.Error = &snapv1.VolumeSnapshotError{Message: ptr.To(`Failed to get snapshot class with error volumesnapshotclasses.snapshot.storage.k8s.io "fast" not found`)}
		})
	}
	r.reconcile(t)
	if got := r.told(); len(got) != 0 {
		t.Fatalf("told %v of a ready set; want nothing", got)
	}
}

// TestAFindingMarkedOnSomeSnapshotsOnlyIsWrittenAgain: a crash between the
// marks leaves the finding to be told again, never lost.
func TestAFindingMarkedOnSomeSnapshotsOnlyIsWrittenAgain(t *testing.T) {
	a, b := snapshot("data-pg-0-abc", "cut"), snapshot("data-pg-1-abc", "cut")
	a.Status.ReadyToUse, b.Status.ReadyToUse = ptr.To(true), ptr.To(true)
	a.Annotations[snapshotter.AnnotationFollowed] = snapshotter.FollowedReady
	r := newRig(t, a, b)
	r.reconcile(t)
	if got := r.told(); len(got) != 1 || strings.Join(r.marks(t), ",") != "ready,ready" {
		t.Fatalf("told %v, marks %v; want told again and both marked", got, r.marks(t))
	}
}

// TestAFindingIsToldOnceWhileTheCacheLagsItsMarks: the reconcile after a
// finding may read snapshots that do not show its marks yet (the cache lags
// the patch); it tells nothing again.
func TestAFindingIsToldOnceWhileTheCacheLagsItsMarks(t *testing.T) {
	a, b := snapshot("data-pg-0-abc", "cut"), snapshot("data-pg-1-abc", "cut")
	a.Status.ReadyToUse, b.Status.ReadyToUse = ptr.To(true), ptr.To(true)
	r := newRig(t, a, b)
	lagging := interceptor.NewClient(r.cl.(client.WithWatch), interceptor.Funcs{
		Patch: func(context.Context, client.WithWatch, client.Object, client.Patch, ...client.PatchOption) error {
			return nil
		},
	})
	r.f.Client = lagging
	r.reconcile(t)
	r.reconcile(t)
	if got := r.told(); len(got) != 1 {
		t.Fatalf("told %v; want SnapshotSetReady once", got)
	}
}

// TestASnapshotBeingDeletedDoesNotHideTheMarksOfTheRest: a set whose first
// snapshot is going keeps its finding.
func TestASnapshotBeingDeletedDoesNotHideTheMarksOfTheRest(t *testing.T) {
	a, b := snapshot("data-pg-0-abc", "cut"), snapshot("data-pg-1-abc", "cut")
	a.Status.ReadyToUse, b.Status.ReadyToUse = ptr.To(true), ptr.To(true)
	a.Finalizers, a.DeletionTimestamp = []string{"snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"}, &metav1.Time{Time: taken}
	b.Annotations[snapshotter.AnnotationFollowed] = snapshotter.FollowedReady
	r := newRig(t, a, b)
	r.reconcile(t)
	if got := r.told(); len(got) != 0 {
		t.Fatalf("told %v of a set marked ready whose other snapshot is being deleted", got)
	}
}
