package schedule

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
	"github.com/snapgate/snapgate/snapshotter/verify"
)

// VerifyScheduler verifies the newest ready set of each StatefulSet with
// snapgate.io/verify at the times it gives. The last verify is read from
// the sets' marks, so a verify is made once per run, and a run missed while
// snapgate was down is caught up once within the starting deadline. A
// request names a StatefulSet.
type VerifyScheduler struct {
	// Client reads StatefulSet metadata from the cache.
	Client client.Client
	// Reader reads StatefulSet metadata from the API server (when its
	// schedule was set, before its first verify).
	Reader client.Reader
	// Sets lists the StatefulSet's sets.
	Sets snapshotter.SetLister
	// Verifier verifies (a *verify.Verifier); its outcome is its own Event
	// and metric.
	Verifier interface {
		Verify(ctx context.Context, namespace, set string, progress func(string)) (verify.Result, error)
	}
	// Events tells on the StatefulSet what was missed or could not be made.
	Events events.EventRecorder
	// StartingDeadline is how late a run may still be made;
	// DefaultStartingDeadline when zero.
	StartingDeadline time.Duration
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock
}

var _ reconcile.Reconciler = (*VerifyScheduler)(nil)

// SetupWithManager registers the VerifyScheduler on StatefulSets with
// snapgate.io/verify.
func (s *VerifyScheduler) SetupWithManager(mgr ctrl.Manager) error {
	// A verify holds its worker for minutes (its pods start, then its check
	// runs): two at a time, so one slow verify does not hold back every other.
	return watchScheduled(mgr, "verify-schedule", policy.Verify, 2, s)
}

// Reconcile verifies the StatefulSet's newest ready set if a run is due, and
// comes back at the next.
func (s *VerifyScheduler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	sts := snapshotter.StatefulSetMetadata()
	if err := s.Client.Get(ctx, req.NamespacedName, sts); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	spec, ok := sts.Annotations[policy.Verify]
	if !ok || sts.DeletionTimestamp != nil {
		return reconcile.Result{}, nil
	}
	sched, err := policy.ParseSchedule(spec)
	if err != nil {
		s.event(sts, corev1.EventTypeWarning, "VerifyScheduleUnreadable", "No set is verified on schedule: %s %q is not a schedule: %v", policy.Verify, spec, err)
		return reconcile.Result{}, nil
	}
	sets, err := snapshotter.ListSets(ctx, s.Sets, sts.Namespace, sts.Name)
	if err != nil {
		return reconcile.Result{}, err
	}
	now := s.now().UTC()
	var last time.Time
	newest := ""
	for _, set := range sets {
		if set.StatefulSetUID != string(sts.UID) {
			continue
		}
		if set.VerifiedAt.After(last) {
			last = set.VerifiedAt
		}
		if newest == "" && set.Ready == set.Snapshots && set.Failed == "" {
			newest = set.Name // sets are listed newest first
		}
	}
	if last.IsZero() {
		// No verify yet: none was missed before the schedule was set.
		if last, err = annotatedAt(ctx, s.Reader, sts, policy.Verify); err != nil {
			return reconcile.Result{}, err
		}
	}
	due, skipped := Due(sched, last.UTC(), now, s.startingDeadline())
	next := sched.Next(now).Sub(now)
	if due.IsZero() {
		return reconcile.Result{RequeueAfter: next}, nil
	}
	if newest == "" {
		s.event(sts, corev1.EventTypeWarning, "NothingToVerify", "The verify due at %s on %s was not made: the StatefulSet has no ready set", due.Format(time.RFC3339), spec)
		return reconcile.Result{RequeueAfter: next}, nil
	}
	if skipped {
		s.event(sts, corev1.EventTypeWarning, "VerifyMissed", "Verifies on %s were missed while snapgate was not running (or could not make them); making the one due at %s, once",
			spec, due.Format(time.RFC3339))
	}
	if _, err := s.Verifier.Verify(ctx, sts.Namespace, newest, func(string) {}); err != nil {
		log.FromContext(ctx).Error(err, "Scheduled verify failed", "due", due, "set", newest)
		s.event(sts, corev1.EventTypeWarning, "ScheduledVerifyFailed", "The verify of set %s due at %s on %s was not made: %v", newest, due.Format(time.RFC3339), spec, err)
		return retryOrNext(now, due, next, s.startingDeadline()), nil
	}
	return reconcile.Result{RequeueAfter: next}, nil
}

func (s *VerifyScheduler) event(sts *metav1.PartialObjectMetadata, kind, reason, format string, args ...any) {
	if s.Events != nil {
		s.Events.Eventf(statefulSetOf(sts), nil, kind, reason, "Verify", format, args...)
	}
}

func (s *VerifyScheduler) startingDeadline() time.Duration {
	return orDefault(s.StartingDeadline, DefaultStartingDeadline)
}

func (s *VerifyScheduler) now() time.Time { return nowOf(s.Clock) }
