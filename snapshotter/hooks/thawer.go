package hooks

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
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
	return l[snapshotter.LabelComponent] == snapshotter.ComponentInFlight && l[snapshotter.LabelManagedBy] == snapshotter.ManagedBy
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
	if err := json.Unmarshal([]byte(l.Annotations[snapshotter.AnnotationOwed]), &owing); err != nil {
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

// OwedMetric is a gauge of the post-hooks owed by replicas that stopped
// renewing their in-flight records (snapgate_post_hooks_owed): pods that may
// still be quiesced while the Thawer has not run their post-hooks, or keeps
// failing to. It is counted from the cached records at each scrape.
func OwedMetric(c client.Reader, namespace string, clk clock.PassiveClock) prometheus.Collector {
	if clk == nil {
		clk = clock.RealClock{}
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "snapgate_post_hooks_owed",
		Help: "Post-hooks owed by snapgate replicas that stopped renewing their in-flight records: pods that may still be quiesced.",
	}, func() float64 {
		var leases coordinationv1.LeaseList
		if err := c.List(context.Background(), &leases, client.InNamespace(namespace),
			client.MatchingLabels{snapshotter.LabelComponent: snapshotter.ComponentInFlight, snapshotter.LabelManagedBy: snapshotter.ManagedBy}); err != nil {
			return 0
		}
		owed := 0
		for i := range leases.Items {
			l := &leases.Items[i]
			var o Owing
			if untilExpiry(l, clk.Now()) > 0 || json.Unmarshal([]byte(l.Annotations[snapshotter.AnnotationOwed]), &o) != nil {
				continue
			}
			owed += len(o.Pods)
		}
		return float64(owed)
	})
}
