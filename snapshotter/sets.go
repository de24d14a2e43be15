package snapshotter

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// SetInfo is one snapshot set of a StatefulSet, as its snapshots' labels and
// annotations describe it: the labels, not the StatefulSet's annotations, are
// the source of truth.
type SetInfo struct {
	Name        string    `json:"name"`
	StatefulSet string    `json:"statefulSet"`
	Reason      string    `json:"reason"`
	Created     time.Time `json:"created"`
	RequestedBy string    `json:"requestedBy,omitempty"`
	Snapshots   int       `json:"snapshots"`
	Ready       int       `json:"ready"`
	// Size is the sum of the snapshots' restore sizes, where the driver reports them.
	Size     resource.Quantity `json:"size"`
	Snapshot map[string]string `json:"snapshotsByPVC"`
	Failed   string            `json:"failed,omitempty"`
	// Generation is the StatefulSet's generation the set was taken from.
	Generation int64 `json:"generation"`
	// StatefulSetUID is the UID of the StatefulSet the set was taken of: an
	// earlier one of the same name has another.
	StatefulSetUID string `json:"statefulSetUID,omitempty"`
	// WaitFor is "cut" for a set whose change was admitted once it was cut.
	WaitFor string `json:"waitFor,omitempty"`
	// Overdue is set when the set was not ready by the ready deadline.
	Overdue bool `json:"overdue,omitempty"`
	// Verified is the outcome of the set's last verify, VerifiedAt when it
	// ended and VerifiedHow what it checked; empty when never verified.
	Verified    string    `json:"verified,omitempty"`
	VerifiedAt  time.Time `json:"verifiedAt,omitzero"`
	VerifiedHow string    `json:"verifiedHow,omitempty"`
}

// TakenAt is when a snapshot's set was started, to the nanosecond where
// recorded, else its creation time.
func TakenAt(vs *snapv1.VolumeSnapshot) time.Time {
	if t, err := time.Parse(time.RFC3339Nano, vs.Annotations[AnnotationTakenAt]); err == nil {
		return t
	}
	return vs.CreationTimestamp.Time
}

// StatefulSetName is the name of the StatefulSet a snapshot was taken of: as
// recorded, or (on snapshots from before it was) its label, which is the name
// unless the name is longer than a label value.
func StatefulSetName(vs *snapv1.VolumeSnapshot) string {
	if name := vs.Annotations[AnnotationStatefulSetName]; name != "" {
		return name
	}
	return vs.Labels[LabelStatefulSet]
}

// SetLister lists snapshots by label; every Backend is one.
type SetLister interface {
	List(ctx context.Context, namespace string, labels client.MatchingLabels, opts ...client.ListOption) ([]snapv1.VolumeSnapshot, error)
}

// ListSets returns the snapshot sets of a StatefulSet, newest first: by the
// generation they were taken from, then by time.
func ListSets(ctx context.Context, l SetLister, namespace, statefulSet string) ([]SetInfo, error) {
	// Only read: the cache's own objects, not copies of them. The Pruner
	// lists every set of a StatefulSet on each of its snapshots' updates, and
	// copying them was a quarter of snapgate's CPU while a 100-replica set
	// was taken.
	items, err := l.List(ctx, namespace, client.MatchingLabels{LabelStatefulSet: LabelValue(statefulSet), LabelManagedBy: ManagedBy}, client.UnsafeDisableDeepCopy)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of statefulset %s/%s: %w", namespace, statefulSet, err)
	}
	sets := map[string]*SetInfo{}
	for i := range items {
		vs := &items[i]
		if vs.DeletionTimestamp != nil {
			continue // being pruned or deleted: no longer part of a set
		}
		name := vs.Labels[LabelSet]
		s, ok := sets[name]
		if !ok {
			gen, _ := strconv.ParseInt(vs.Annotations[AnnotationGeneration], 10, 64)
			s = &SetInfo{Name: name, StatefulSet: statefulSet, Reason: vs.Annotations[AnnotationReason], Generation: gen,
				StatefulSetUID: vs.Annotations[AnnotationStatefulSetUID],
				Created:        TakenAt(vs), RequestedBy: vs.Annotations[AnnotationRequestedBy], Snapshot: map[string]string{}}
			sets[name] = s
		}
		if created := TakenAt(vs); created.Before(s.Created) {
			s.Created = created
		}
		s.Snapshots++
		if vs.Annotations[AnnotationWaitFor] != "" {
			s.WaitFor = vs.Annotations[AnnotationWaitFor]
		}
		if vs.Annotations[AnnotationFollowed] == FollowedOverdue {
			s.Overdue = true
		}
		// A verify marks every snapshot; the newest mark is the set's.
		if at, err := time.Parse(time.RFC3339, vs.Annotations[AnnotationVerifiedAt]); err == nil && at.After(s.VerifiedAt) {
			s.Verified, s.VerifiedAt, s.VerifiedHow = vs.Annotations[AnnotationVerified], at, vs.Annotations[AnnotationVerifiedHow]
		}
		if src := vs.Spec.Source.PersistentVolumeClaimName; src != nil {
			s.Snapshot[*src] = vs.Name
		}
		if st := vs.Status; st != nil {
			if st.ReadyToUse != nil && *st.ReadyToUse {
				s.Ready++
			}
			if st.RestoreSize != nil {
				s.Size.Add(*st.RestoreSize)
			}
			if msg, failed := Failure(vs); failed && s.Failed == "" {
				s.Failed = vs.Name + ": " + msg
			}
		}
	}
	out := make([]SetInfo, 0, len(sets))
	for _, s := range sets {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Generation != out[j].Generation {
			return out[i].Generation > out[j].Generation
		}
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.After(out[j].Created)
		}
		return out[i].Name > out[j].Name
	})
	return out, nil
}

// SetRequest maps one of snapgate's snapshots to a request for its set: the
// snapshot's namespace, and the set's name. Controllers that act on whole
// sets (record, follow) key their work by it.
func SetRequest(_ context.Context, o client.Object) []reconcile.Request {
	set := o.GetLabels()[LabelSet]
	if set == "" || o.GetLabels()[LabelManagedBy] != ManagedBy {
		return nil
	}
	return []reconcile.Request{{NamespacedName: types.NamespacedName{Namespace: o.GetNamespace(), Name: set}}}
}

// StatefulSetMetadata is the metadata-only form in which snapgate's controllers
// watch StatefulSets.
func StatefulSetMetadata() *metav1.PartialObjectMetadata {
	m := &metav1.PartialObjectMetadata{}
	m.SetGroupVersionKind(appsv1.SchemeGroupVersion.WithKind("StatefulSet"))
	return m
}

// SnapshotRef is a snapshot of a set, for an Event's related object: the event
// library folds events of one object, reason and related object into one
// series.
func SnapshotRef(namespace, name string) *snapv1.VolumeSnapshot {
	return &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: name}}
}
