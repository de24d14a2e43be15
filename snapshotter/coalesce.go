package snapshotter

import (
	"context"
	"time"

	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// CoalesceDelay is how long the controllers that look at a set after the fact
// (the Follower, the Pruner) let its snapshots' events gather before they look.
const CoalesceDelay = time.Second

// Coalesced is handler.EnqueueRequestsFromMapFunc, but each request is added
// after delay, and the queue keeps one of each: the events of a set being
// taken (each of its snapshots created, cut, then ready; 300 of them at 100
// replicas) fold into one reconcile a delay, where each listed the set or all
// of the StatefulSet's sets again, on cores the CSI pipeline needs. Only for
// controllers whose work may wait that long; never for admission's own wait.
func Coalesced(toRequests handler.MapFunc, delay time.Duration) handler.EventHandler {
	add := func(ctx context.Context, o client.Object, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
		if o == nil {
			return
		}
		for _, r := range toRequests(ctx, o) {
			q.AddAfter(r, delay)
		}
	}
	return handler.Funcs{
		CreateFunc: func(ctx context.Context, e event.CreateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		UpdateFunc: func(ctx context.Context, e event.UpdateEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.ObjectOld, q)
			add(ctx, e.ObjectNew, q)
		},
		DeleteFunc: func(ctx context.Context, e event.DeleteEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
		GenericFunc: func(ctx context.Context, e event.GenericEvent, q workqueue.TypedRateLimitingInterface[reconcile.Request]) {
			add(ctx, e.Object, q)
		},
	}
}
