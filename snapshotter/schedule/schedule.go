package schedule

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Defaults of the Scheduler.
const (
	// DefaultStartingDeadline is how late a scheduled set may still be
	// taken: a run missed while snapgate was down is caught up once, if it
	// was due no longer ago than this.
	DefaultStartingDeadline = time.Hour
	// DefaultTimeout bounds one scheduled set, hooks and wait included.
	DefaultTimeout = 10 * time.Minute
	// retryIn is when a scheduled set that failed is tried again, while its
	// run is within the starting deadline.
	retryIn = time.Minute
)

// User is who takes scheduled sets, for the record on the snapshots.
const User = "snapgate schedule"

// Scheduler takes a set of each StatefulSet with snapgate.io/schedule at the
// times it gives, through the engine: the set is named after its run, so a
// run taken twice (a retry, a restart) is one set. A request names a
// StatefulSet.
type Scheduler struct {
	// Client reads StatefulSet metadata and snapshots from the cache.
	Client client.Client
	// Reader reads the StatefulSet from the API server, to plan from.
	Reader client.Reader
	// Engine takes the sets.
	Engine *snapshotter.Engine
	// Events tells on the StatefulSet what was missed or failed.
	Events events.EventRecorder
	// StartingDeadline is how late a run may still be taken;
	// DefaultStartingDeadline when zero.
	StartingDeadline time.Duration
	// Timeout bounds one set; DefaultTimeout when zero.
	Timeout time.Duration
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock
}

var _ reconcile.Reconciler = (*Scheduler)(nil)

// SetupWithManager registers the Scheduler on StatefulSets with a schedule.
func (s *Scheduler) SetupWithManager(mgr ctrl.Manager) error {
	// A run holds its worker while its set is taken (hooks, cut and, as the
	// StatefulSet's wait-for says, ready): schedules that fall due together
	// are taken four at a time rather than one after another.
	return watchScheduled(mgr, "schedule", policy.Schedule, 4, s)
}

// watchScheduled registers r on the StatefulSets that carry annotation,
// workers runs at a time; each request names a StatefulSet.
func watchScheduled(mgr ctrl.Manager, name, annotation string, workers int, r reconcile.Reconciler) error {
	scheduled := predicate.NewPredicateFuncs(func(o client.Object) bool {
		_, ok := o.GetAnnotations()[annotation]
		return ok
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named(name).
		WatchesMetadata(snapshotter.StatefulSetMetadata(), &handler.EnqueueRequestForObject{}, builder.WithPredicates(scheduled)).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

// retryOrNext is when to come back after the run due at due failed: in a
// minute while that run is still within the starting deadline, else at the
// next run, next from now.
func retryOrNext(now, due time.Time, next, deadline time.Duration) reconcile.Result {
	if now.Sub(due)+retryIn < deadline {
		return reconcile.Result{RequeueAfter: min(retryIn, next)}
	}
	return reconcile.Result{RequeueAfter: next}
}

// Reconcile takes the StatefulSet's due run, if it has one not yet taken, and
// comes back at the next.
func (s *Scheduler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	sts := snapshotter.StatefulSetMetadata()
	if err := s.Client.Get(ctx, req.NamespacedName, sts); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	spec, ok := sts.Annotations[policy.Schedule]
	if !ok || sts.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	sched, err := policy.ParseSchedule(spec)
	if err != nil {
		// The validating webhook refuses such a value; one from before it is told.
		s.event(sts, corev1.EventTypeWarning, "ScheduleUnreadable", "No set is taken on schedule: %s %q is not a schedule: %v", policy.Schedule, spec, err)
		return reconcile.Result{}, nil
	}
	// Schedules are read in UTC (CRON_TZ= in the schedule says otherwise).
	now := s.now().UTC()
	last, err := s.lastScheduled(ctx, sts)
	if err != nil {
		return reconcile.Result{}, err
	}
	last = last.UTC()
	due, skipped := Due(sched, last, now, s.startingDeadline())
	next := sched.Next(now).Sub(now)
	if due.IsZero() {
		return reconcile.Result{RequeueAfter: next}, nil
	}
	if skipped {
		s.event(sts, corev1.EventTypeWarning, "ScheduleMissed", "Scheduled sets of %s were missed while snapgate was not running (or could not take them); taking the one due at %s, once",
			spec, due.UTC().Format(time.RFC3339))
	}
	if err := s.take(ctx, req, due); err != nil {
		log.FromContext(ctx).Error(err, "Scheduled set failed", "due", due)
		s.event(sts, corev1.EventTypeWarning, "ScheduledSetFailed", "The set due at %s on %s was not taken: %v", due.UTC().Format(time.RFC3339), spec, err)
		return retryOrNext(now, due, next, s.startingDeadline()), nil
	}
	return reconcile.Result{RequeueAfter: next}, nil
}

// Due is the run to take now, given the last run taken and the starting
// deadline: the latest time the schedule gave after last and up to now, if it
// is no older than deadline (zero when there is none). skipped says that
// runs before it were never taken (snapgate was not running, or could not).
func Due(sched cron.Schedule, last, now time.Time, deadline time.Duration) (due time.Time, skipped bool) {
	// Only the runs within the deadline are looked at; walking further back
	// would step an every-minute schedule through a long outage.
	from := last
	if earliest := now.Add(-deadline); from.Before(earliest) {
		from = earliest
		skipped = !sched.Next(last).After(earliest)
	}
	runs := 0
	for t := sched.Next(from); !t.After(now); t = sched.Next(t) {
		due, runs = t, runs+1
	}
	return due, skipped || runs > 1
}

// lastScheduled is when the StatefulSet's newest scheduled set was due, or,
// before its first, when its schedule was set: a schedule given to a
// StatefulSet of long ago has missed no run.
func (s *Scheduler) lastScheduled(ctx context.Context, sts *metav1.PartialObjectMetadata) (time.Time, error) {
	sets, err := snapshotter.ListSets(ctx, s.Engine.SnapshotBackend(), sts.Namespace, sts.Name)
	if err != nil {
		return time.Time{}, err
	}
	var last time.Time
	for _, set := range sets {
		if set.Reason == string(policy.ReasonSchedule) && set.StatefulSetUID == string(sts.UID) && set.Created.After(last) {
			last = set.Created
		}
	}
	if !last.IsZero() {
		return last, nil
	}
	return annotatedAt(ctx, s.Reader, sts, policy.Schedule)
}

// annotatedAt is when the StatefulSet's annotation was last written, read
// from the API server: the cache holds no managedFields. It is read before a
// schedule's first run only.
func annotatedAt(ctx context.Context, r client.Reader, sts *metav1.PartialObjectMetadata, annotation string) (time.Time, error) {
	full := snapshotter.StatefulSetMetadata()
	if err := r.Get(ctx, client.ObjectKeyFromObject(sts), full); err != nil {
		return time.Time{}, fmt.Errorf("read statefulset %s/%s: %w", sts.Namespace, sts.Name, err)
	}
	return writtenAt(full, annotation), nil
}

// writtenAt is when the object's annotation was last written, as its
// managedFields tell (the newest write of a manager that owns it), or, where
// they do not tell, when the object was created.
func writtenAt(obj metav1.Object, annotation string) time.Time {
	path := fieldpath.MakePathOrDie("metadata", "annotations", annotation)
	at := obj.GetCreationTimestamp().Time
	for _, mf := range obj.GetManagedFields() {
		if mf.FieldsV1 == nil || mf.Time == nil || !mf.Time.After(at) {
			continue
		}
		var owned fieldpath.Set
		if err := owned.FromJSON(bytes.NewReader(mf.FieldsV1.Raw)); err == nil && owned.Has(path) {
			at = mf.Time.Time
		}
	}
	return at
}

// take takes the set of the run due at due, with the preset's hooks only
// (Engine.PresetHooksOnly: a schedule asks for no one whose rights could be
// checked). A policy that cannot be read takes the set without hooks.
func (s *Scheduler) take(ctx context.Context, req reconcile.Request, due time.Time) error {
	var sts appsv1.StatefulSet
	if err := s.Reader.Get(ctx, req.NamespacedName, &sts); err != nil {
		return client.IgnoreNotFound(err)
	}
	p, errs := policy.Parse(&sts)
	if len(errs) > 0 {
		s.event(&sts, corev1.EventTypeWarning, "PolicyUnreadable", "The scheduled set is taken without hooks: the snapgate annotations cannot be read: %s", errs.ToAggregate())
		p = policy.Policy{WaitFor: policy.WaitReady}
	}
	engine, p := s.Engine.PresetHooksOnly(p)
	ctx, cancel := context.WithTimeout(ctx, s.timeout())
	defer cancel()
	start := s.now()
	plan, err := engine.PlanOnDemand(ctx, snapshotter.OnDemand{StatefulSet: &sts, Policy: p, Reason: policy.ReasonSchedule,
		By: authenticationv1.UserInfo{Username: User}, At: due})
	if err != nil {
		return err
	}
	prog, err := engine.Take(ctx, plan)
	var qe *snapshotter.QuiesceError
	switch {
	case errors.As(err, &qe):
		return fmt.Errorf("the preset's pre-hook failed: %w", err)
	case err != nil:
		return fmt.Errorf("set %s: %d of %d snapshots ready: %w", plan.Set, prog.Ready, prog.Total, err)
	}
	engine.RecordTaken(ctx, plan, prog, s.now().Sub(start))
	return nil
}

func (s *Scheduler) event(obj client.Object, kind, reason, format string, args ...any) {
	if s.Events == nil {
		return
	}
	if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
		obj = statefulSetOf(m)
	}
	s.Events.Eventf(obj, nil, kind, reason, "Schedule", format, args...)
}

// statefulSetOf is the StatefulSet of metadata, typed, for an Event's
// reference to name its kind.
func statefulSetOf(m *metav1.PartialObjectMetadata) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{ObjectMeta: m.ObjectMeta}
}

func (s *Scheduler) startingDeadline() time.Duration {
	return orDefault(s.StartingDeadline, DefaultStartingDeadline)
}

// orDefault is d, or def where d is not above zero.
func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// nowOf is c's time, or the real clock's where c is nil.
func nowOf(c clock.PassiveClock) time.Time {
	if c != nil {
		return c.Now()
	}
	return time.Now()
}

func (s *Scheduler) timeout() time.Duration { return orDefault(s.Timeout, DefaultTimeout) }

func (s *Scheduler) now() time.Time { return nowOf(s.Clock) }
