package snapshotter

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/controller-runtime/pkg/client"
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
}

// ListSets returns the snapshot sets of a StatefulSet, newest first: by the
// generation they were taken from, then by time.
func ListSets(ctx context.Context, r client.Reader, namespace, statefulSet string) ([]SetInfo, error) {
	var list snapv1.VolumeSnapshotList
	if err := r.List(ctx, &list, client.InNamespace(namespace),
		client.MatchingLabels{LabelStatefulSet: LabelValue(statefulSet), LabelManagedBy: ManagedBy}); err != nil {
		return nil, fmt.Errorf("list snapshots of statefulset %s/%s: %w", namespace, statefulSet, err)
	}
	sets := map[string]*SetInfo{}
	for i := range list.Items {
		vs := &list.Items[i]
		name := vs.Labels[LabelSet]
		s, ok := sets[name]
		if !ok {
			gen, _ := strconv.ParseInt(vs.Annotations[AnnotationGeneration], 10, 64)
			s = &SetInfo{Name: name, StatefulSet: statefulSet, Reason: vs.Annotations[AnnotationReason], Generation: gen,
				Created: vs.CreationTimestamp.Time, RequestedBy: vs.Annotations[AnnotationRequestedBy], Snapshot: map[string]string{}}
			sets[name] = s
		}
		if vs.CreationTimestamp.Time.Before(s.Created) {
			s.Created = vs.CreationTimestamp.Time
		}
		s.Snapshots++
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
			if st.Error != nil && st.Error.Message != nil && s.Failed == "" && !transient(*st.Error.Message) {
				s.Failed = vs.Name + ": " + *st.Error.Message
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
