package snapshotter

import (
	"context"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// TestCoalescedFoldsASetsEventsIntoOneRequestAfterTheDelay: the events of a
// set's snapshots (created, cut, ready, for each) are one request, added only
// once the delay is over; another set's is its own.
func TestCoalescedFoldsASetsEventsIntoOneRequestAfterTheDelay(t *testing.T) {
	q := workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[reconcile.Request]())
	defer q.ShutDown()
	snap := func(name, set string) *snapv1.VolumeSnapshot {
		return &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name,
			Labels: map[string]string{LabelSet: set, LabelManagedBy: ManagedBy}}}
	}
	const delay = 200 * time.Millisecond
	h, ctx := Coalesced(SetRequest, delay), context.Background()
	start := time.Now()
	for i := range 100 {
		vs := snap("data-pg-"+string(rune('a'+i%26)), "pg-abc")
		h.Create(ctx, event.CreateEvent{Object: vs}, q)
		h.Update(ctx, event.UpdateEvent{ObjectOld: vs, ObjectNew: vs}, q)
	}
	h.Delete(ctx, event.DeleteEvent{Object: snap("data-web-0", "web-def")}, q)
	h.Generic(ctx, event.GenericEvent{Object: snap("not-ours", "")}, q)
	if n := q.Len(); n != 0 && time.Since(start) < delay {
		t.Fatalf("%d requests queued before the delay", n)
	}
	got := map[types.NamespacedName]bool{}
	for range 2 {
		r, _ := q.Get()
		got[r.NamespacedName] = true
		q.Done(r)
	}
	if waited := time.Since(start); waited < delay {
		t.Fatalf("a request came after %s, before the %s delay", waited, delay)
	}
	if !got[types.NamespacedName{Namespace: "db", Name: "pg-abc"}] || !got[types.NamespacedName{Namespace: "db", Name: "web-def"}] {
		t.Fatalf("requests %v; want pg-abc and web-def", got)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("%d more requests queued; want one a set", n)
	}
}
