package snapshotter

import (
	"context"
	"fmt"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Backend is how a set's snapshots come into being, are read back and go.
// Whatever makes them, a set is read as VolumeSnapshots, one per PVC, each
// labelled with its set: a restore provisions a PVC from one, and a group
// snapshot's members are VolumeSnapshots too. PerPVC is today's backend; a
// VolumeGroupSnapshot backend (one group per set, cut at one instant) is the
// next.
type Backend interface {
	// Create creates the planned set's snapshots. A snapshot that exists
	// already as part of this set is fine; one of that name that belongs to
	// something else is a PlanError, never overwritten.
	Create(ctx context.Context, plan *Plan) error
	// List lists the snapshots in namespace whose labels match, of every set.
	// opts add to the listing: client.UnsafeDisableDeepCopy for a caller that
	// only reads what it gets.
	List(ctx context.Context, namespace string, labels client.MatchingLabels, opts ...client.ListOption) ([]snapv1.VolumeSnapshot, error)
	// Delete deletes every snapshot of a set.
	Delete(ctx context.Context, namespace, set string) error
}

// PerPVC is the Backend of one VolumeSnapshot per PVC, created in parallel.
type PerPVC struct {
	// Client creates and deletes VolumeSnapshots.
	Client client.Client
	// Reader reads a snapshot that exists already from the API server.
	Reader client.Reader
	// Snapshots lists VolumeSnapshots, from a cache where there is one.
	Snapshots client.Reader
}

var _ Backend = PerPVC{}

// Create implements Backend.
func (b PerPVC) Create(ctx context.Context, plan *Plan) error {
	g, gctx := errgroup.WithContext(ctx)
	for i := range plan.Snapshots {
		s := &plan.Snapshots[i]
		g.Go(func() error { return b.create(gctx, plan, s) })
	}
	return g.Wait()
}

func (b PerPVC) create(ctx context.Context, plan *Plan, s *PlannedSnapshot) error {
	vs, err := plan.volumeSnapshot(s)
	if err != nil {
		return err
	}
	err = b.Client.Create(ctx, vs)
	if apierrors.IsAlreadyExists(err) {
		var existing snapv1.VolumeSnapshot
		if err := b.Reader.Get(ctx, client.ObjectKeyFromObject(vs), &existing); err != nil {
			return fmt.Errorf("get snapshot %s/%s: %w", vs.Namespace, vs.Name, err)
		}
		src := existing.Spec.Source.PersistentVolumeClaimName
		if existing.Labels[LabelSet] != plan.Set || src == nil || *src != s.PVC {
			return planErrorf("VolumeSnapshot %s/%s already exists and is not snapgate's snapshot of PVC %s for set %s; "+
				"snapgate never overwrites a snapshot: rename or delete that one", vs.Namespace, vs.Name, s.PVC, plan.Set)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("create snapshot %s/%s: %w", vs.Namespace, vs.Name, err)
	}
	return nil
}

// List implements Backend.
func (b PerPVC) List(ctx context.Context, namespace string, labels client.MatchingLabels, opts ...client.ListOption) ([]snapv1.VolumeSnapshot, error) {
	var list snapv1.VolumeSnapshotList
	if err := b.Snapshots.List(ctx, &list, append([]client.ListOption{client.InNamespace(namespace), labels}, opts...)...); err != nil {
		return nil, err
	}
	return list.Items, nil
}

// Delete implements Backend: one call for the whole set.
func (b PerPVC) Delete(ctx context.Context, namespace, set string) error {
	err := b.Client.DeleteAllOf(ctx, &snapv1.VolumeSnapshot{}, client.InNamespace(namespace),
		client.MatchingLabels{LabelSet: set, LabelManagedBy: ManagedBy})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}
