package snapshotter

import (
	"context"
	"slices"
	"sync"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// countingBackend is PerPVC that counts what the engine asks of it.
type countingBackend struct {
	PerPVC
	mu    sync.Mutex
	calls []string
}

func (b *countingBackend) note(call string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, call)
}

func (b *countingBackend) Create(ctx context.Context, plan *Plan) error {
	b.note("create " + plan.Set)
	return b.PerPVC.Create(ctx, plan)
}

func (b *countingBackend) List(ctx context.Context, ns string, l client.MatchingLabels, opts ...client.ListOption) ([]snapv1.VolumeSnapshot, error) {
	b.note("list")
	return b.PerPVC.List(ctx, ns, l, opts...)
}

// TestTheEngineMakesAndReadsSetsThroughItsBackend: a backend set on the
// engine is what creates the set and counts its progress.
func TestTheEngineMakesAndReadsSetsThroughItsBackend(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	b := &countingBackend{PerPVC: PerPVC{Client: h.client, Reader: h.client, Snapshots: h.client}}
	h.engine.Backend = b
	if err := h.engine.CreateSet(context.Background(), h.plan); err != nil {
		t.Fatal(err)
	}
	if _, err := h.engine.SetProgress(context.Background(), h.plan); err != nil {
		t.Fatal(err)
	}
	if want := []string{"create " + h.plan.Set, "list"}; !slices.Equal(b.calls, want) {
		t.Fatalf("backend calls %v, want %v", b.calls, want)
	}
}

// TestPerPVCDeletesOneSetOnly: deleting a set leaves the other sets, and
// snapshots that are not snapgate's, alone.
func TestPerPVCDeletesOneSetOnly(t *testing.T) {
	snap := func(name, set string, managed bool) *snapv1.VolumeSnapshot {
		vs := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, Labels: map[string]string{LabelSet: set}}}
		if managed {
			vs.Labels[LabelManagedBy] = ManagedBy
		}
		return vs
	}
	c := fake.NewClientBuilder().WithScheme(scheme()).WithObjects(
		snap("a-0", "a", true), snap("a-1", "a", true), snap("b-0", "b", true), snap("a-foreign", "a", false)).Build()
	b := PerPVC{Client: c, Reader: c, Snapshots: c}
	if err := b.Delete(context.Background(), "db", "a"); err != nil {
		t.Fatal(err)
	}
	left, err := b.List(context.Background(), "db", nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, vs := range left {
		names = append(names, vs.Name)
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"a-foreign", "b-0"}) {
		t.Fatalf("left after deleting set a: %v", names)
	}
}
