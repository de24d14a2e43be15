package snapshotter

import (
	"fmt"
	"sync"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
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

// Register subscribes the tracker to an informer's events.
func (t *Tracker) Register(inf cache.Informer) error {
	notify := func(any) { t.Notify() }
	_, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    notify,
		UpdateFunc: func(_, _ any) { t.Notify() },
		DeleteFunc: notify,
	})
	if err != nil {
		return fmt.Errorf("watch VolumeSnapshots: %w", err)
	}
	return nil
}
