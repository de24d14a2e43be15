package snapshotter

import (
	"fmt"
	"maps"
	"sync"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// Tracker turns VolumeSnapshot watch events into a wake-up for every waiter, so
// that waiting is driven by the watch and never by polling. A waiter takes
// Changed() before it reads the cache, then blocks on it: an event that lands
// between the read and the block still wakes it.
type Tracker struct {
	mu sync.Mutex
	ch chan struct{}
}

// NewTracker returns a Tracker with no informer yet; see Register.
func NewTracker() *Tracker { return &Tracker{ch: make(chan struct{})} }

// Changed returns a channel that is closed at the next VolumeSnapshot event.
func (t *Tracker) Changed() <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ch
}

// Notify wakes every waiter.
func (t *Tracker) Notify() {
	t.mu.Lock()
	defer t.mu.Unlock()
	close(t.ch)
	t.ch = make(chan struct{})
}

// Register subscribes the tracker to an informer's events: every snapshot
// created or deleted, and every update that SetMayChange.
func (t *Tracker) Register(inf cache.Informer) error {
	notify := func(any) { t.Notify() }
	_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc: notify,
		UpdateFunc: func(old, updated any) {
			o, ook := old.(*snapv1.VolumeSnapshot)
			u, uok := updated.(*snapv1.VolumeSnapshot)
			if !ook || !uok || SetMayChange(o, u) {
				t.Notify()
			}
		},
		DeleteFunc: notify,
	})
	if err != nil {
		return fmt.Errorf("watch VolumeSnapshots: %w", err)
	}
	return nil
}

// SetMayChange reports whether an update of a VolumeSnapshot may change what
// snapgate reads of its set (a set's progress, ListSets, the Follower's
// findings, a restore's wait): its labels, annotations or deletion, or its
// status's cut, readiness, size or error. The snapshot controller's other
// updates of a snapshot being taken (its finalizers, the bound content's name)
// change none of it. Each event that passes costs a listing of the set, or of
// all of a StatefulSet's sets, from the cache: at 100 replicas that listing
// was a third of snapgate's CPU, on a machine where the CSI pipeline shares
// the cores.
func SetMayChange(old, updated *snapv1.VolumeSnapshot) bool {
	if !maps.Equal(old.Labels, updated.Labels) || !maps.Equal(old.Annotations, updated.Annotations) ||
		!old.DeletionTimestamp.Equal(updated.DeletionTimestamp) {
		return true
	}
	o, u := old.Status, updated.Status
	if o == nil || u == nil {
		return (o == nil) != (u == nil)
	}
	return !equality.Semantic.DeepEqual(o.CreationTime, u.CreationTime) || !equality.Semantic.DeepEqual(o.ReadyToUse, u.ReadyToUse) ||
		!equality.Semantic.DeepEqual(o.RestoreSize, u.RestoreSize) || !equality.Semantic.DeepEqual(o.Error, u.Error)
}

// SetChanges is SetMayChange as a controller's predicate: it passes creates,
// deletes and generic events, and the updates that may change a set.
func SetChanges() predicate.Funcs {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		o, ook := e.ObjectOld.(*snapv1.VolumeSnapshot)
		u, uok := e.ObjectNew.(*snapv1.VolumeSnapshot)
		return !ook || !uok || SetMayChange(o, u)
	}}
}
