package record

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// DefaultGrace is how long the Recorder waits for a change to be stored
// before it decides the change was never admitted (it lost a conflict, or another
// webhook denied it).
const DefaultGrace = 2 * time.Minute

// Recorder writes the record of a set (snapgate.io/last-*) onto its StatefulSet
// when the change could not carry it: a scale through the scale subresource is
// admitted with a Scale object, which has no annotations. It acts once the
// StatefulSet shows the change, so a change that never landed is never recorded.
// A reconcile request names a set: Namespace and Name (the set's name).
type Recorder struct {
	// Client reads VolumeSnapshots from the cache and writes.
	Client client.Client
	// Reader reads StatefulSets from the API server, uncached.
	Reader client.Reader
	// Grace is how long to wait for the change; DefaultGrace when zero.
	Grace time.Duration
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock
}

var _ reconcile.Reconciler = (*Recorder)(nil)

// SetupWithManager registers the Recorder on snapshots that wait for a record.
func (r *Recorder) SetupWithManager(mgr ctrl.Manager) error {
	pending := predicate.NewPredicateFuncs(func(o client.Object) bool {
		return o.GetAnnotations()[snapshotter.AnnotationRecordPending] == "true"
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("recorder").
		Watches(&snapv1.VolumeSnapshot{}, handler.EnqueueRequestsFromMapFunc(snapshotter.SetRequest), builder.WithPredicates(pending)).
		Complete(r)
}

// Reconcile records one set on its StatefulSet, or gives up on it after the grace.
func (r *Recorder) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var list snapv1.VolumeSnapshotList
	if err := r.Client.List(ctx, &list, client.InNamespace(req.Namespace), client.MatchingLabels{snapshotter.LabelSet: req.Name}); err != nil {
		return reconcile.Result{}, fmt.Errorf("list snapshots of set %s: %w", req.Name, err)
	}
	var pending []*snapv1.VolumeSnapshot
	for i := range list.Items {
		if list.Items[i].Annotations[snapshotter.AnnotationRecordPending] == "true" {
			pending = append(pending, &list.Items[i])
		}
	}
	if len(pending) == 0 {
		return reconcile.Result{}, nil
	}
	first := pending[0]
	log := log.FromContext(ctx).WithValues("set", req.Name)

	var sts appsv1.StatefulSet
	err := r.Reader.Get(ctx, types.NamespacedName{Namespace: req.Namespace, Name: first.Labels[snapshotter.LabelStatefulSet]}, &sts)
	if apierrors.IsNotFound(err) || (err == nil && string(sts.UID) != first.Annotations[snapshotter.AnnotationStatefulSetUID]) {
		log.Info("StatefulSet of set is gone; not recording it")
		return reconcile.Result{}, r.clearPending(ctx, pending)
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("get statefulset of set %s: %w", req.Name, err)
	}
	after, _ := strconv.Atoi(first.Annotations[snapshotter.AnnotationReplicasAfter])
	if snapshotter.Replicas(&sts) != int32(after) {
		age := r.now().Sub(first.CreationTimestamp.Time)
		if age > r.grace() {
			log.Info("Change of set was never stored; not recording it", "statefulSet", client.ObjectKeyFromObject(&sts), "waited", age)
			return reconcile.Result{}, r.clearPending(ctx, pending)
		}
		// Waiting is a requeue: the scale is being stored right now, or never will be.
		return reconcile.Result{RequeueAfter: time.Second}, nil
	}

	byPVC := map[string]string{}
	for _, vs := range list.Items {
		if src := vs.Spec.Source.PersistentVolumeClaimName; src != nil {
			byPVC[*src] = vs.Name
		}
	}
	snaps, _ := json.Marshal(byPVC)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		policy.LastSet: req.Name, policy.LastSnapshots: string(snaps), policy.LastReason: first.Annotations[snapshotter.AnnotationReason],
	}}})
	if err := r.Client.Patch(ctx, &sts, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return reconcile.Result{}, fmt.Errorf("record set %s on statefulset %s/%s: %w", req.Name, sts.Namespace, sts.Name, err)
	}
	log.Info("Snapshot set recorded", "statefulSet", client.ObjectKeyFromObject(&sts))
	return reconcile.Result{}, r.clearPending(ctx, pending)
}

func (r *Recorder) clearPending(ctx context.Context, snaps []*snapv1.VolumeSnapshot) error {
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, snapshotter.AnnotationRecordPending))
	for _, vs := range snaps {
		if err := r.Client.Patch(ctx, vs, client.RawPatch(types.MergePatchType, patch)); client.IgnoreNotFound(err) != nil {
			return fmt.Errorf("clear record mark of snapshot %s/%s: %w", vs.Namespace, vs.Name, err)
		}
	}
	return nil
}

func (r *Recorder) grace() time.Duration {
	if r.Grace > 0 {
		return r.Grace
	}
	return DefaultGrace
}

func (r *Recorder) now() time.Time {
	if r.Clock != nil {
		return r.Clock.Now()
	}
	return time.Now()
}
