package prune

import (
	"context"
	"fmt"
	"slices"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Defaults of the Pruner.
const (
	// DefaultKeep is how many sets a StatefulSet keeps when snapgate.io/keep
	// does not say.
	DefaultKeep = 5
	// DefaultUnadmittedGrace is how long a set whose change has not landed is
	// kept: a denied request is often retried within minutes, and finds its set.
	DefaultUnadmittedGrace = 30 * time.Minute
)

// Pruner deletes a StatefulSet's oldest sets beyond snapgate.io/keep, and sooner
// the sets whose change was never admitted. It never deletes a set of a
// StatefulSet that is gone (deleting a StatefulSet never deletes its sets), a
// set a rollback uses or is asked for, or the last admitted set.
// A reconcile request names a StatefulSet.
type Pruner struct {
	// Client reads VolumeSnapshots from the cache and deletes them.
	Client client.Client
	// Keep is the default of snapgate.io/keep; DefaultKeep when zero.
	Keep int
	// UnadmittedGrace is how long a set whose change has not landed is kept;
	// DefaultUnadmittedGrace when zero.
	UnadmittedGrace time.Duration
	// Events records each pruned set on its StatefulSet.
	Events events.EventRecorder
	// Metrics, when set, counts pruned sets.
	Metrics *snapshotter.Metrics
	// Backend lists and deletes the sets; PerPVC on Client when nil.
	Backend snapshotter.Backend
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock
}

var _ reconcile.Reconciler = (*Pruner)(nil)

// SetupWithManager registers the Pruner on snapgate's snapshots and on changes
// of snapgate.io/keep.
func (p *Pruner) SetupWithManager(mgr ctrl.Manager) error {
	changed := predicate.Funcs{
		CreateFunc:  func(event.CreateEvent) bool { return false },
		DeleteFunc:  func(event.DeleteEvent) bool { return false },
		GenericFunc: func(event.GenericEvent) bool { return false },
		UpdateFunc:  func(e event.UpdateEvent) bool { return PruneMayChange(e.ObjectOld, e.ObjectNew) },
	}
	return ctrl.NewControllerManagedBy(mgr).
		Named("pruner").
		Watches(&snapv1.VolumeSnapshot{}, snapshotter.Coalesced(statefulSetRequest, snapshotter.CoalesceDelay), builder.WithPredicates(snapshotter.SetChanges())).
		WatchesMetadata(snapshotter.StatefulSetMetadata(), &handler.EnqueueRequestForObject{}, builder.WithPredicates(changed)).
		Complete(p)
}

// PruneMayChange reports whether an update of a StatefulSet may change what
// is pruned: snapgate.io/keep or max-age, or a change landing. A set is ready before its
// change is admitted, so when its snapshots last changed the change had not
// landed and the set was not counted; the change landing (a new generation,
// the set recorded as last) is what makes it count.
func PruneMayChange(old, updated client.Object) bool {
	oa, na := old.GetAnnotations(), updated.GetAnnotations()
	return oa[policy.Keep] != na[policy.Keep] || oa[policy.MaxAge] != na[policy.MaxAge] || oa[policy.LastSet] != na[policy.LastSet] ||
		old.GetGeneration() != updated.GetGeneration()
}

func statefulSetRequest(_ context.Context, o client.Object) []reconcile.Request {
	sts := o.GetLabels()[snapshotter.LabelStatefulSet]
	if sts == "" || o.GetLabels()[snapshotter.LabelManagedBy] != snapshotter.ManagedBy {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: sts}}}
}

// Reconcile prunes the sets of one StatefulSet. It reads only the cache: the
// StatefulSet's metadata (snapgate's annotations, UID, generation) and its
// snapshots, so the many snapshot events of a set being taken cost the API
// server nothing.
func (p *Pruner) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	sts := snapshotter.StatefulSetMetadata()
	if err := p.Client.Get(ctx, req.NamespacedName, sts); err != nil {
		// Gone: its sets are all that is left of its data.
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	sets, err := snapshotter.ListSets(ctx, p.backend(), sts.Namespace, sts.Name)
	if err != nil {
		return reconcile.Result{}, err
	}
	prune, requeue := p.PlanPrune(sts, sets)
	for _, d := range prune {
		if err := p.deleteSet(ctx, sts, d, sets); err != nil {
			return reconcile.Result{}, err
		}
	}
	return reconcile.Result{RequeueAfter: requeue}, nil
}

// Pruned is a set to delete, and why.
type Pruned struct {
	Set, Why string
}

// PlanPrune decides which of a StatefulSet's sets (newest first) go: the ones
// whose change never landed or whose snapshots failed, once the grace is over,
// and the oldest ready sets beyond keep. Only ready sets count: a set still
// being taken, or one that failed, never pushes a good one out. While a set is
// being taken nothing is pruned, so that pruning never competes with it (its
// readiness brings the Pruner back). requeue is when the next grace ends.
func (p *Pruner) PlanPrune(sts metav1.Object, sets []snapshotter.SetInfo) (prune []Pruned, requeue time.Duration) {
	for _, s := range sets {
		if s.Ready < s.Snapshots && s.Failed == "" && p.now().Sub(s.Created) < p.unadmittedGrace() {
			return nil, 0
		}
	}
	keep, maxAge, protected := p.limits(sts.GetAnnotations())
	wake := func(wait time.Duration) {
		if wait > 0 && (requeue == 0 || wait < requeue) {
			requeue = wait
		}
	}
	later := func(s snapshotter.SetInfo) bool {
		wait := p.unadmittedGrace() - p.now().Sub(s.Created)
		wake(wait)
		return wait > 0
	}
	// Sets of one reason (restarts, scale-downs, sets on demand) never push
	// out the newest set taken before a template change: the one an upgrade
	// gone wrong is rolled back to.
	lastUpgrade := ""
	kept := 0
	for _, s := range sets {
		switch {
		case protected[s.Name]:
			// Never pruned, and counted: the record's set is nearly always
			// the newest, and keep N means N sets, not N besides it.
			kept++
			if s.Reason == string(policy.ReasonTemplate) && lastUpgrade == "" {
				lastUpgrade = s.Name
			}
			continue
		case s.StatefulSetUID != string(sts.GetUID()):
			continue // of an earlier StatefulSet of this name: never pruned, not counted
		case s.Failed != "":
			if !later(s) {
				prune = append(prune, Pruned{Set: s.Name, Why: "its snapshots failed (" + s.Failed + ")"})
			}
			continue
		case s.Ready < s.Snapshots:
			continue // slow to be ready: not counted, not pruned
		case p.unadmitted(sts, s):
			if !later(s) {
				prune = append(prune, Pruned{Set: s.Name, Why: fmt.Sprintf("its %s change was never admitted (the StatefulSet is still at generation %d after %s)",
					s.Reason, s.Generation, p.unadmittedGrace())})
			}
			continue // not counted while its change may still land
		case s.Reason == string(policy.ReasonDelete):
			// The last record of a StatefulSet being deleted: it is ready, and
			// the StatefulSet still there, just before the delete is admitted;
			// counting it would prune an older set because of the delete.
			continue
		}
		kept++
		// The newest set is never too old: a StatefulSet always has one.
		if age := p.now().Sub(s.Created); maxAge > 0 && kept > 1 {
			if age > maxAge {
				prune = append(prune, Pruned{Set: s.Name, Why: fmt.Sprintf("it is older than %s (%s)", maxAge, policy.MaxAge)})
				continue
			}
			wake(maxAge - age)
		}
		if s.Reason == string(policy.ReasonTemplate) && lastUpgrade == "" {
			lastUpgrade = s.Name
			continue
		}
		if kept > keep {
			prune = append(prune, Pruned{Set: s.Name, Why: fmt.Sprintf("the StatefulSet keeps its %d newest sets (%s)", keep, policy.Keep)})
		}
	}
	return prune, requeue
}

// limits are what a StatefulSet's annotations say of its sets: how many to
// keep, the age past which they go (0: none), and the sets never pruned (the
// last recorded one, those a rollback in progress uses or is asked for, and the
// latest rollback's safety set).
func (p *Pruner) limits(ann map[string]string) (keep int, maxAge time.Duration, protected map[string]bool) {
	pol, _ := policy.ParseAnnotations(map[string]string{policy.Keep: ann[policy.Keep], policy.MaxAge: ann[policy.MaxAge]})
	keep = pol.Keep
	if keep == 0 {
		keep = p.keep()
	}
	// A max-age that does not parse prunes nothing by age: only keep applies.
	if pol.MaxAge >= policy.MinMaxAge {
		maxAge = pol.MaxAge
	}
	protected = map[string]bool{ann[policy.LastSet]: true, ann[policy.RollbackTo]: true}
	if st, ok := policy.ParseRollbackState(ann); ok {
		// The safety set is the only copy of the data the rollback replaced:
		// it outlives the rollback, so that the rollback can be undone, until
		// the next rollback's record takes its place.
		if st.SafetySet != "" {
			protected[st.SafetySet] = true
		}
		if st.InProgress() {
			protected[st.Request], protected[st.Set] = true, true
		}
	}
	return keep, maxAge, protected
}

// unadmitted reports whether the change a set was taken for has not landed:
// a change that lands moves the StatefulSet past the generation recorded on
// the set (a delete that lands removes it, and its sets are not pruned). Sets
// taken on demand or by a rollback are for no change.
func (p *Pruner) unadmitted(sts metav1.Object, s snapshotter.SetInfo) bool {
	if !slices.Contains([]string{string(policy.ReasonTemplate), string(policy.ReasonRestart), string(policy.ReasonScaleDown), string(policy.ReasonDelete)}, s.Reason) {
		return false
	}
	return s.Generation == sts.GetGeneration()
}

func (p *Pruner) deleteSet(ctx context.Context, sts *metav1.PartialObjectMetadata, d Pruned, sets []snapshotter.SetInfo) error {
	if err := p.backend().Delete(ctx, sts.Namespace, d.Set); err != nil {
		return fmt.Errorf("prune set %s of statefulset %s/%s: %w", d.Set, sts.Namespace, sts.Name, err)
	}
	p.Metrics.ObservePruned()
	log.FromContext(ctx).Info("Snapshot set pruned", "statefulSet", client.ObjectKeyFromObject(sts), "set", d.Set, "why", d.Why)
	if p.Events != nil {
		// Related to the set, or the event library folds every prune of this
		// StatefulSet into one series under the first set's message.
		var related runtime.Object
		for _, s := range sets {
			for _, name := range s.Snapshot {
				if s.Name == d.Set && related == nil {
					related = snapshotter.SnapshotRef(sts.Namespace, name)
				}
			}
		}
		p.Events.Eventf(sts, related, corev1.EventTypeNormal, "SnapshotSetPruned", "Prune", "Deleted snapshot set %s: %s", d.Set, d.Why)
	}
	return nil
}

func (p *Pruner) backend() snapshotter.Backend {
	if p.Backend != nil {
		return p.Backend
	}
	return snapshotter.PerPVC{Client: p.Client, Reader: p.Client, Snapshots: p.Client}
}

func (p *Pruner) keep() int {
	if p.Keep > 0 {
		return p.Keep
	}
	return DefaultKeep
}

func (p *Pruner) unadmittedGrace() time.Duration {
	if p.UnadmittedGrace > 0 {
		return p.UnadmittedGrace
	}
	return DefaultUnadmittedGrace
}

func (p *Pruner) now() time.Time {
	if p.Clock != nil {
		return p.Clock.Now()
	}
	return time.Now()
}
