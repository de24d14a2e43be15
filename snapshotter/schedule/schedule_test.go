package schedule

import (
	"context"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
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
	"github.com/snapgate/snapgate/snapshotter/policy"
)

func at(day, hour, minute, second int) time.Time {
	return time.Date(2026, 12, day, hour, minute, second, 0, time.UTC)
}

func TestDue(t *testing.T) {
	daily, _ := policy.ParseSchedule("0 2 * * *")
	minutely, _ := policy.ParseSchedule("* * * * *")
	for name, tc := range map[string]struct {
		sched     string
		last, now time.Time
		due       time.Time
		skipped   bool
	}{
		"just due":                              {"daily", at(1, 2, 0, 5), at(2, 2, 0, 30), at(2, 2, 0, 0), false},
		"not due yet":                           {"daily", at(1, 2, 0, 5), at(2, 1, 59, 0), time.Time{}, false},
		"late, within the deadline":             {"daily", at(1, 2, 0, 5), at(2, 2, 40, 0), at(2, 2, 0, 0), false},
		"past the deadline":                     {"daily", at(1, 2, 0, 5), at(2, 4, 0, 0), time.Time{}, true},
		"an outage: the newest run, once":       {"minutely", at(1, 10, 0, 1), at(1, 10, 5, 30), at(1, 10, 5, 0), true},
		"a long outage looks back an hour only": {"minutely", at(1, 10, 0, 1), at(4, 10, 0, 30), at(4, 10, 0, 0), true},
	} {
		s := daily
		if tc.sched == "minutely" {
			s = minutely
		}
		due, skipped := Due(s, tc.last, tc.now, time.Hour)
		if !due.Equal(tc.due) || skipped != tc.skipped {
			t.Errorf("%s: due %s, skipped %v; want %s, %v", name, due, skipped, tc.due, tc.skipped)
		}
	}
}

// world is StatefulSet pg (2 replicas, created on Dec 1) with a schedule,
// its PVCs bound, and a CSI driver the client plays that readies every
// snapshot as it is created.
func world(t *testing.T, schedule string) client.WithWatch {
	t.Helper()
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = snapv1.AddToScheme(s)
	const driver = "hostpath.csi.snapgate.io"
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg", UID: "uid-1", CreationTimestamp: metav1.Time{Time: at(1, 0, 0, 0)},
			Annotations: map[string]string{policy.Schedule: schedule}},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2),
			Template:             corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pg", Image: "postgres:15"}}}},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}},
	}
	objs := []client.Object{sts, &snapv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: "hostpath", Annotations: map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"}},
		Driver:     driver, DeletionPolicy: snapv1.VolumeSnapshotContentDelete,
	}}
	for _, n := range []string{"data-pg-0", "data-pg-1"} {
		objs = append(objs,
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: n}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-" + n},
				Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}},
			&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-" + n},
				Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: n}}}})
	}
	csi := interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if vs, ok := obj.(*snapv1.VolumeSnapshot); ok {
			vs.Status = &snapv1.VolumeSnapshotStatus{CreationTime: &metav1.Time{Time: time.Now()}, ReadyToUse: ptr.To(true)}
		}
		return c.Create(ctx, obj, opts...)
	}}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithInterceptorFuncs(csi).Build()
}

type rig struct {
	cl     client.WithWatch
	s      *Scheduler
	clock  *clocktesting.FakePassiveClock
	events *events.FakeRecorder
}

func newRig(t *testing.T, schedule string, now time.Time) *rig {
	cl := world(t, schedule)
	r := &rig{cl: cl, clock: clocktesting.NewFakePassiveClock(now), events: events.NewFakeRecorder(20)}
	engine := &snapshotter.Engine{Client: cl, Reader: cl, Snapshots: cl, Changes: snapshotter.NewTracker(), Clock: r.clock, Events: r.events}
	r.s = &Scheduler{Client: cl, Reader: cl, Engine: engine, Events: r.events, Clock: r.clock}
	return r
}

func (r *rig) reconcile(t *testing.T) reconcile.Result {
	t.Helper()
	res, err := r.s.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "pg"}})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// sets are the scheduled sets, by name, with their snapshot counts.
func (r *rig) sets(t *testing.T) map[string]int {
	t.Helper()
	sets, err := snapshotter.ListSets(context.Background(), snapshotter.PerPVC{Snapshots: r.cl}, "db", "pg")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, s := range sets {
		if s.Reason == string(policy.ReasonSchedule) && s.RequestedBy == User {
			out[s.Name] = s.Snapshots
		}
	}
	return out
}

func (r *rig) told(reason string) []string {
	var out []string
	for {
		select {
		case e := <-r.events.Events:
			if strings.Contains(e, reason) {
				out = append(out, e)
			}
		default:
			return out
		}
	}
}

// TestAScheduledRunIsTakenOnceAndTheNextAtItsTime: at 02:00 a set of every
// replica is taken; reconciling again takes no second one; the requeue is the
// next run, which takes a new set.
func TestAScheduledRunIsTakenOnceAndTheNextAtItsTime(t *testing.T) {
	r := newRig(t, "0 2 * * *", at(2, 1, 59, 0))
	if res := r.reconcile(t); len(r.sets(t)) != 0 || res.RequeueAfter != time.Minute {
		t.Fatalf("before its time: sets %v, requeue %s; want none, and a look at 02:00", r.sets(t), res.RequeueAfter)
	}
	r.clock.SetTime(at(2, 2, 0, 1))
	res := r.reconcile(t)
	first := r.sets(t)
	if len(first) != 1 || res.RequeueAfter != 24*time.Hour-time.Second {
		t.Fatalf("at 02:00: sets %v, requeue %s; want one set of 2 snapshots, and a look at 02:00 tomorrow", first, res.RequeueAfter)
	}
	for _, n := range first {
		if n != 2 {
			t.Fatalf("the set has %d snapshots, want one per replica", n)
		}
	}
	if got := r.told("SnapshotSetTaken"); len(got) != 1 || !strings.Contains(got[0], "on its schedule (snapgate.io/schedule)") {
		t.Fatalf("events %v; want one SnapshotSetTaken saying it was on schedule", got)
	}
	r.clock.SetTime(at(2, 2, 0, 30))
	r.reconcile(t)
	if got := r.sets(t); len(got) != 1 {
		t.Fatalf("reconciled again within the run: sets %v; want still one", got)
	}
	r.clock.SetTime(at(3, 2, 0, 2))
	r.reconcile(t)
	if got := r.sets(t); len(got) != 2 {
		t.Fatalf("the next day: sets %v; want a second", got)
	}
}

// TestRunsMissedWhileDownAreCaughtUpOnce: snapgate back after five missed
// runs of an every-minute schedule takes one set, and says runs were missed.
func TestRunsMissedWhileDownAreCaughtUpOnce(t *testing.T) {
	r := newRig(t, "* * * * *", at(2, 10, 0, 1))
	r.reconcile(t)
	if len(r.sets(t)) != 1 {
		t.Fatalf("sets %v; want the 10:00 run", r.sets(t))
	}
	r.told("")
	r.clock.SetTime(at(2, 10, 5, 30))
	r.reconcile(t)
	if got := r.sets(t); len(got) != 2 {
		t.Fatalf("after five missed runs: sets %v; want one more, not five", got)
	}
	if got := r.told("ScheduleMissed"); len(got) != 1 || !strings.Contains(got[0], "taking the one due at 2026-12-02T10:05:00Z, once") {
		t.Fatalf("events %v; want one ScheduleMissed naming the run taken", got)
	}
}

// TestAScheduleNewlySetHasMissedNothing: a StatefulSet of long ago given an
// every-minute schedule at 10:00:30 (its managedFields say when) takes no set
// at once and tells of no missed run; its first set is the 10:01 run.
func TestAScheduleNewlySetHasMissedNothing(t *testing.T) {
	r := newRig(t, "* * * * *", at(2, 10, 0, 40))
	r.s.Reader = withManagedFields{Reader: r.cl, fields: []metav1.ManagedFieldsEntry{
		{Manager: "kubectl-create", Operation: metav1.ManagedFieldsOperationUpdate, Time: &metav1.Time{Time: at(1, 0, 0, 0)},
			FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:replicas":{}}}`)}},
		{Manager: "kubectl-annotate", Operation: metav1.ManagedFieldsOperationUpdate, Time: &metav1.Time{Time: at(2, 10, 0, 30)},
			FieldsType: "FieldsV1", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:metadata":{"f:annotations":{"f:snapgate.io/schedule":{}}}}`)}},
	}}
	if res := r.reconcile(t); len(r.sets(t)) != 0 || res.RequeueAfter != 20*time.Second {
		t.Fatalf("just after the schedule was set: sets %v, requeue %s; want none, and a look at 10:01", r.sets(t), res.RequeueAfter)
	}
	if got := r.told("ScheduleMissed"); len(got) != 0 {
		t.Fatalf("events %v; a schedule just set has missed nothing", got)
	}
	r.clock.SetTime(at(2, 10, 1, 1))
	r.reconcile(t)
	if len(r.sets(t)) != 1 || len(r.told("ScheduleMissed")) != 0 {
		t.Fatalf("at 10:01: sets %v; want the 10:01 run, on time", r.sets(t))
	}
}

// withManagedFields is the API server's read of StatefulSet metadata, with
// managedFields (the fake client keeps none of its own).
type withManagedFields struct {
	client.Reader
	fields []metav1.ManagedFieldsEntry
}

func (w withManagedFields) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	err := w.Reader.Get(ctx, key, obj, opts...)
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		m.ManagedFields = w.fields
	}
	return err
}

// TestAFailedRunIsRetriedWithinTheDeadline: a pre-hook that fails takes no
// set, says so, and the run is tried again a minute later.
func TestAFailedRunIsRetriedWithinTheDeadline(t *testing.T) {
	r := newRig(t, "0 2 * * *", at(2, 2, 0, 1))
	r.s.Engine.Hooks = failingHooks{}
	var sts appsv1.StatefulSet
	_ = r.cl.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "pg"}, &sts)
	sts.Annotations[policy.HookPreset] = "postgres"
	if err := r.cl.Update(context.Background(), &sts); err != nil {
		t.Fatal(err)
	}
	res := r.reconcile(t)
	if len(r.sets(t)) != 0 || res.RequeueAfter != time.Minute {
		t.Fatalf("a run whose pre-hook failed: sets %v, requeue %s; want none, and a retry in a minute", r.sets(t), res.RequeueAfter)
	}
	if got := r.told("ScheduledSetFailed"); len(got) != 1 || !strings.Contains(got[0], "pre-hook failed") {
		t.Fatalf("events %v; want ScheduledSetFailed naming the pre-hook", got)
	}
	r.s.Engine.Hooks = nil
	r.clock.SetTime(at(2, 2, 1, 1))
	r.reconcile(t)
	if len(r.sets(t)) != 1 {
		t.Fatalf("the retry: sets %v; want the 02:00 run taken", r.sets(t))
	}
}

type failingHooks struct{}

func (failingHooks) Quiesce(context.Context, *snapshotter.Plan) (snapshotter.Quiesced, error) {
	return snapshotter.Quiesced{}, errorString("psql: connection refused")
}

type errorString string

func (e errorString) Error() string { return string(e) }
