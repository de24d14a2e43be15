package snapshotter

import (
	"context"
	"fmt"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// OnDemand is a set taken for no change: `snapgate snapshot`, and schedules.
type OnDemand struct {
	// StatefulSet is the StatefulSet as it is now; every replica is snapshotted.
	StatefulSet *appsv1.StatefulSet
	// Policy is its parsed policy (hooks, claims, class, wait-for).
	Policy policy.Policy
	// Reason is recorded on the set; ReasonManual when empty.
	Reason policy.Reason
	// By is who asked, for the record.
	By authenticationv1.UserInfo
	// At is when it was asked: two sets asked of the same spec at different
	// times are two sets.
	At time.Time
}

// PlanOnDemand plans an on-demand set. A StatefulSet with nothing to snapshot
// (no claim templates, no bound PVC) is an error that says so.
func (e *Engine) PlanOnDemand(ctx context.Context, d OnDemand) (*Plan, error) {
	reason := d.Reason
	if reason == "" {
		reason = policy.ReasonManual
	}
	change := Change{
		Reason: reason, Old: d.StatefulSet, NewReplicas: Replicas(d.StatefulSet),
		Nonce: d.At.UTC().Format(time.RFC3339Nano), UserInfo: d.By,
	}
	plan, err := e.Plan(ctx, change, d.Policy)
	if err != nil {
		return nil, err
	}
	if len(plan.Snapshots) == 0 {
		return plan, planErrorf("statefulset %s/%s has nothing to snapshot: %s", d.StatefulSet.Namespace, d.StatefulSet.Name, nothingBecause(plan))
	}
	return plan, nil
}

func nothingBecause(plan *Plan) string {
	if len(plan.LeftOut) == 0 {
		return "it has no volumeClaimTemplates"
	}
	var why string
	for i, l := range plan.LeftOut {
		if i > 0 {
			why += "; "
		}
		why += l.String()
	}
	return why
}

// WatchSnapshots starts a cache of snapgate's VolumeSnapshots in one namespace
// and a Tracker fed by it, for an Engine that runs outside the manager (the
// CLI): its waits are watch-driven, as the webhook's are. Both live until ctx
// ends.
func WatchSnapshots(ctx context.Context, cfg *rest.Config, scheme *runtime.Scheme, namespace string) (client.Reader, *Tracker, error) {
	managedBy := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})
	snaps, err := cache.New(cfg, cache.Options{Scheme: scheme, DefaultNamespaces: map[string]cache.Config{namespace: {}},
		ByObject: map[client.Object]cache.ByObject{&snapv1.VolumeSnapshot{}: {Label: managedBy}}})
	if err != nil {
		return nil, nil, fmt.Errorf("watch snapshots: %w", err)
	}
	tracker := NewTracker()
	inf, err := snaps.GetInformer(ctx, &snapv1.VolumeSnapshot{})
	if err != nil {
		return nil, nil, fmt.Errorf("watch snapshots: %w", err)
	}
	if err := tracker.Register(inf); err != nil {
		return nil, nil, err
	}
	go func() { _ = snaps.Start(ctx) }()
	if !snaps.WaitForCacheSync(ctx) {
		return nil, nil, fmt.Errorf("watch snapshots of namespace %s: the cache did not sync", namespace)
	}
	return snaps, tracker, nil
}
