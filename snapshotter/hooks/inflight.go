package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

const (
	// AnnotationOwed, on an in-flight record, lists the post-hooks still owed.
	AnnotationOwed = policy.Prefix + "owed-post-hooks"
	// LabelComponent marks snapgate's in-flight records among the Leases.
	LabelComponent = policy.Prefix + "component"
	// ComponentInFlight is LabelComponent's value on an in-flight record.
	ComponentInFlight = "in-flight-hooks"
)

// InFlightDuration is how long a record of post-hooks in flight lives
// unrenewed: a replica that dies leaves its application quiesced about this
// long, plus the Thawer's interval, before another replica runs its post-hooks.
const InFlightDuration = 15 * time.Second

// InFlight records the post-hooks a replica owes while its hooks are in flight:
// a Lease in snapgate's namespace that the replica renews until every post-hook
// has run. A replica that dies (or stalls) stops renewing it, and the Thawer of
// whichever replica leads runs the owed post-hooks once the Lease expires:
// seconds, where the in-pod bounds (presets.MySQLLockBound, presets.FreezeBound) take a minute.
type InFlight struct {
	// Client creates, renews and deletes the records.
	Client client.Client
	// Namespace is snapgate's own namespace.
	Namespace string
	// Identity names this replica as the records' holder.
	Identity string
	// Duration is how long a record lives unrenewed; it is renewed three times
	// as often.
	Duration time.Duration
	// Clock tells the time and ticks the renewals; the real clock when nil.
	Clock clock.WithTicker
}

func (in *InFlight) clock() clock.WithTicker {
	if in.Clock != nil {
		return in.Clock
	}
	return clock.RealClock{}
}

// Owed is the post-hook owed to one pod.
type Owed struct {
	Pod  string   `json:"pod"`
	Post []string `json:"post"`
}

// Owing is the content of an in-flight record.
type Owing struct {
	Namespace   string `json:"namespace"`
	StatefulSet string `json:"statefulSet"`
	Pods        []Owed `json:"pods"`
}

// held is a record its holder renews until end.
type held struct {
	in    *InFlight
	lease *coordinationv1.Lease
	owing Owing
	stop  context.CancelFunc
	done  chan struct{}
}

// begin records the post-hooks owed to targets, before any pre-hook runs, and
// renews the record until end.
func (in *InFlight) begin(ctx context.Context, sts *appsv1.StatefulSet, targets []target) (*held, error) {
	owing := Owing{Namespace: sts.Namespace, StatefulSet: sts.Name}
	for _, t := range targets {
		if len(t.hook.Post) > 0 {
			owing.Pods = append(owing.Pods, Owed{Pod: t.pod, Post: t.hook.Post})
		}
	}
	if len(owing.Pods) == 0 {
		return nil, nil
	}
	b, err := json.Marshal(owing)
	if err != nil {
		return nil, err
	}
	now := metav1.NewMicroTime(in.clock().Now())
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "snapgate-hooks-",
			Namespace:    in.Namespace,
			Labels:       map[string]string{snapshotter.LabelManagedBy: snapshotter.ManagedBy, LabelComponent: ComponentInFlight},
			Annotations:  map[string]string{AnnotationOwed: string(b)},
		},
		Spec: coordinationv1.LeaseSpec{
			HolderIdentity:       ptr.To(in.Identity),
			LeaseDurationSeconds: ptr.To(int32(in.Duration / time.Second)),
			AcquireTime:          &now,
			RenewTime:            &now,
		},
	}
	if err := in.Client.Create(ctx, lease); err != nil {
		return nil, fmt.Errorf("record the post-hooks in flight in namespace %s: %w", in.Namespace, err)
	}
	// Renewal outlives the request's context: the post-hooks run after it.
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	h := &held{in: in, lease: lease, owing: owing, stop: stop, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		// Not at once, as wait.Until would: the record was written just now.
		tick := in.clock().NewTicker(in.Duration / 3)
		defer tick.Stop()
		for {
			select {
			case <-rctx.Done():
				return
			case <-tick.C():
				h.renew(rctx)
			}
		}
	}()
	return h, nil
}

func (h *held) renew(ctx context.Context) {
	patch := client.MergeFrom(h.lease.DeepCopy())
	h.lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(h.in.clock().Now()))
	if err := h.in.Client.Patch(ctx, h.lease, patch); err != nil && ctx.Err() == nil {
		log.FromContext(ctx).Error(err, "Renewing the record of post-hooks in flight", "lease", h.lease.Name)
	}
}

// end stops renewing the record, and deletes it when every post-hook has run;
// otherwise it leaves only the failed pods in it, for the Thawer to retry once
// it expires.
func (h *held) end(ctx context.Context, failed []string) error {
	if h == nil {
		return nil
	}
	h.stop()
	<-h.done
	if len(failed) == 0 {
		err := h.in.Client.Delete(ctx, h.lease)
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete the record of post-hooks in flight %s: %w", h.lease.Name, err)
		}
		return nil
	}
	owing := h.owing
	owing.Pods = slices.DeleteFunc(slices.Clone(owing.Pods), func(o Owed) bool { return !slices.Contains(failed, o.Pod) })
	// Not held: the Thawer tries once it expires, as its last renewal says.
	return setOwing(ctx, h.in.Client, h.lease, owing, time.Time{}, 0)
}

// setOwing writes what is still owed into a record and, with hold, holds it
// again: it expires after hold from now.
func setOwing(ctx context.Context, c client.Client, lease *coordinationv1.Lease, owing Owing, now time.Time, hold time.Duration) error {
	b, err := json.Marshal(owing)
	if err != nil {
		return err
	}
	patch := client.MergeFromWithOptions(lease.DeepCopy(), client.MergeFromWithOptimisticLock{})
	lease.Annotations[AnnotationOwed] = string(b)
	if hold > 0 {
		lease.Spec.RenewTime = ptr.To(metav1.NewMicroTime(now))
		lease.Spec.LeaseDurationSeconds = ptr.To(int32(hold / time.Second))
	}
	if err := c.Patch(ctx, lease, patch); err != nil {
		return fmt.Errorf("record the post-hooks still owed in %s: %w", lease.Name, err)
	}
	return nil
}

// untilExpiry is how long until a record expires: its holder has stopped
// renewing it when this is not above zero.
func untilExpiry(l *coordinationv1.Lease, now time.Time) time.Duration {
	if l.Spec.RenewTime == nil || l.Spec.LeaseDurationSeconds == nil {
		return 0
	}
	return l.Spec.RenewTime.Add(time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second).Sub(now)
}

// Thawer runs the post-hooks of in-flight records whose holders stopped
// renewing them: a snapgate replica that was killed between a pre-hook and its
// post-hook. It watches the records and comes back to each when it would
// expire. It runs where the controllers run (the leader).
type Thawer struct {
	// Runner resolves and runs the hooks.
	Runner *Runner
	// Client reads the records (from a cache that watches them), reads
	// StatefulSets, and updates and deletes the records.
	Client client.Client
	// Retry is how long a record whose post-hook failed waits for the next try.
	Retry time.Duration
	// GiveUp is how long after its start a record is dropped even though a
	// post-hook still fails: by then the in-pod bounds have ended what they can.
	GiveUp time.Duration
	// Events, when set, tells on the StatefulSet what was run or given up.
	Events events.EventRecorder
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock
}

var _ reconcile.Reconciler = (*Thawer)(nil)

// isRecord reports whether an object is one of snapgate's in-flight records;
// the manager's cache holds only those of the Leases.
func isRecord(o client.Object) bool {
	l := o.GetLabels()
	return l[LabelComponent] == ComponentInFlight && l[snapshotter.LabelManagedBy] == snapshotter.ManagedBy
}

// SetupWithManager registers the Thawer on the in-flight records.
func (t *Thawer) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("thawer").
		For(&coordinationv1.Lease{}, builder.WithPredicates(predicate.NewPredicateFuncs(isRecord))).
		Complete(t)
}

// Reconcile runs the owed post-hooks of a record once it has expired, and
// deletes it once none is owed; a record still live is looked at again when
// it would expire.
func (t *Thawer) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var l coordinationv1.Lease
	if err := t.Client.Get(ctx, req.NamespacedName, &l); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if left := untilExpiry(&l, t.now()); left > 0 {
		return reconcile.Result{RequeueAfter: left}, nil
	}
	if err := t.thaw(ctx, &l); err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{}, nil
}

func (t *Thawer) thaw(ctx context.Context, l *coordinationv1.Lease) error {
	logger := log.FromContext(ctx).WithValues("record", l.Name, "holder", ptr.Deref(l.Spec.HolderIdentity, ""))
	var owing Owing
	if err := json.Unmarshal([]byte(l.Annotations[AnnotationOwed]), &owing); err != nil {
		logger.Error(err, "Dropping a record of post-hooks that cannot be read")
		return t.drop(ctx, l)
	}
	logger = logger.WithValues("statefulset", owing.Namespace+"/"+owing.StatefulSet)
	var sts appsv1.StatefulSet
	err := t.Client.Get(ctx, types.NamespacedName{Namespace: owing.Namespace, Name: owing.StatefulSet}, &sts)
	if apierrors.IsNotFound(err) {
		logger.Info("The StatefulSet is gone, and with it its pods: no post-hook owed")
		return t.drop(ctx, l)
	}
	if err != nil {
		return fmt.Errorf("get statefulset %s/%s: %w", owing.Namespace, owing.StatefulSet, err)
	}
	// The hooks are resolved again from the StatefulSet as it is: a record
	// names which post-hooks are owed, never a command of its own, so that
	// writing a record runs nothing that the StatefulSet does not configure.
	pol, errs := policy.Parse(&sts)
	if len(errs) > 0 && t.Events != nil {
		// Still tried: a post-hook whose command resolves as recorded runs.
		t.Events.Eventf(&sts, nil, corev1.EventTypeWarning, "PolicyUnreadable", "Thaw",
			"Owed post-hooks are resolved from snapgate annotations that cannot be read: %s", errs.ToAggregate())
	}
	still := t.runOwed(log.IntoContext(ctx, logger), &sts, pol.Hooks, owing, ptr.Deref(l.Spec.HolderIdentity, "?"))
	if len(still) == 0 {
		return t.drop(ctx, l)
	}
	if start := l.Spec.AcquireTime; start == nil || t.now().Sub(start.Time) > t.GiveUp {
		logger.Info("Giving up on owed post-hooks that keep failing", "pods", len(still))
		for _, o := range still {
			t.event(&sts, o.Pod, corev1.EventTypeWarning, "OwedPostHookFailed",
				"Gave up on the post-hook in pod %s after %s of failures; check that the application there is not still quiesced", o.Pod, t.GiveUp)
		}
		return t.drop(ctx, l)
	}
	// Held again for Retry, as its holder would: the next try comes then.
	owing.Pods = still
	return setOwing(ctx, t.Client, l, owing, t.now(), t.Retry)
}

// runOwed runs the owed post-hooks, in parallel: every one of these pods is
// quiesced until its post-hook runs. It returns those still owed (failed, or
// not resolved); one that no longer applies (the pod gone, its hooks changed)
// is not owed any more.
func (t *Thawer) runOwed(ctx context.Context, sts *appsv1.StatefulSet, h policy.Hooks, owing Owing, holder string) []Owed {
	logger := log.FromContext(ctx)
	keep := make([]bool, len(owing.Pods))
	var wg sync.WaitGroup
	for i, o := range owing.Pods {
		wg.Go(func() {
			tg, err := t.Runner.target(ctx, sts, h, o.Pod)
			switch {
			case err != nil:
				keep[i] = true
				logger.Error(err, "Resolving an owed post-hook", "pod", o.Pod)
			case tg == nil || !slices.Equal(tg.hook.Post, o.Post):
				logger.Info("Owed post-hook no longer applies: the pod is gone or its hooks changed", "pod", o.Pod)
			default:
				if err := t.Runner.run(ctx, owing.Namespace, *tg, "post", tg.hook.Post); err != nil {
					keep[i] = true
					logger.Error(err, "Running an owed post-hook", "pod", o.Pod)
					return
				}
				logger.Info("Ran a post-hook its holder never did", "pod", o.Pod)
				t.event(sts, o.Pod, corev1.EventTypeNormal, "OwedPostHookRan",
					"Ran the post-hook in pod %s that snapgate replica %s owed and never ran (it stopped)", o.Pod, holder)
			}
		})
	}
	wg.Wait()
	var still []Owed
	for i, o := range owing.Pods {
		if keep[i] {
			still = append(still, o)
		}
	}
	return still
}

func (t *Thawer) now() time.Time {
	if t.Clock != nil {
		return t.Clock.Now()
	}
	return time.Now()
}

// event tells on the StatefulSet, with the pod as related object: the events
// library folds events that differ only in their note into one series.
func (t *Thawer) event(sts *appsv1.StatefulSet, pod, kind, reason, note string, args ...any) {
	if t.Events != nil {
		related := &corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: sts.Namespace, Name: pod}
		t.Events.Eventf(sts, related, kind, reason, "Thaw", note, args...)
	}
}

// drop deletes a record, unless its holder renewed it meanwhile.
func (t *Thawer) drop(ctx context.Context, l *coordinationv1.Lease) error {
	err := t.Client.Delete(ctx, l, client.Preconditions{ResourceVersion: ptr.To(l.ResourceVersion)})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("delete record %s: %w", l.Name, err)
	}
	return nil
}
