package rollback

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Copy is a set restored beside the StatefulSet it was taken of: a new
// StatefulSet of its own name, with the recorded pod template, and its PVCs
// provisioned from the set's snapshots, so the old data can be read while the
// live one runs on.
type Copy struct {
	StatefulSet *appsv1.StatefulSet
	// Claims are created first, named as the new StatefulSet's claim
	// templates expect, so its controller adopts them.
	Claims []*corev1.PersistentVolumeClaim
}

// CopyOf plans the copy of set as a StatefulSet named name, from the set's
// snapshots: every one must be ready, and its ordinals contiguous. The copy
// has labels of its own (so no Service of the original selects its pods) and
// snapgate.io/guard: disabled (a copy to read is not guarded, even in a
// guarded namespace).
func CopyOf(set string, snaps []snapv1.VolumeSnapshot, name string) (*Copy, error) {
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return nil, refusef("--into=%q: must be a StatefulSet name: %v", name, msgs)
	}
	if len(snaps) == 0 {
		return nil, refusef("there is no snapshot set %q in this namespace; `kubectl snapgate list sts/NAME` shows a StatefulSet's sets", set)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Name < snaps[j].Name })
	first := &snaps[0]
	var tmpl corev1.PodTemplateSpec
	if err := json.Unmarshal([]byte(first.Annotations[snapshotter.AnnotationPodTemplate]), &tmpl); err != nil {
		return nil, refusef("snapshot %s of set %s has no readable pod template (%s)", first.Name, set, snapshotter.AnnotationPodTemplate)
	}
	c := &Copy{}
	ordinals := map[int32]bool{}
	claims := map[string]corev1.PersistentVolumeClaimSpec{}
	for i := range snaps {
		claim, spec, ord, err := copyClaim(set, &snaps[i], name)
		if err != nil {
			return nil, err
		}
		c.Claims = append(c.Claims, claim)
		ordinals[ord], claims[claimOf(&snaps[i])] = true, spec
	}
	start, replicas, err := contiguous(set, ordinals)
	if err != nil {
		return nil, err
	}
	c.StatefulSet = copyStatefulSet(set, name, first.Namespace, tmpl, start, replicas, claims)
	for _, pvc := range c.Claims {
		pvc.Labels = c.StatefulSet.Spec.Selector.MatchLabels
	}
	return c, nil
}

// claimOf is the claim template a snapshot was taken of: its PVC's name
// without the StatefulSet and ordinal (the label holds it cut when long).
func claimOf(vs *snapv1.VolumeSnapshot) string {
	suffix := "-" + snapshotter.StatefulSetName(vs) + "-" + vs.Labels[snapshotter.LabelOrdinal]
	if src := vs.Spec.Source.PersistentVolumeClaimName; src != nil && strings.HasSuffix(*src, suffix) && len(*src) > len(suffix) {
		return strings.TrimSuffix(*src, suffix)
	}
	return vs.Labels[snapshotter.LabelClaim]
}

// copyClaim is the PVC that holds one snapshot's data in the copy.
func copyClaim(set string, vs *snapv1.VolumeSnapshot, name string) (*corev1.PersistentVolumeClaim, corev1.PersistentVolumeClaimSpec, int32, error) {
	var spec corev1.PersistentVolumeClaimSpec
	st := vs.Status
	if vs.DeletionTimestamp != nil || st == nil || st.ReadyToUse == nil || !*st.ReadyToUse {
		return nil, spec, 0, refusef("snapshot %s of set %s is not ready to use; copy a set whose snapshots are all ready", vs.Name, set)
	}
	ord, err := strconv.ParseInt(vs.Labels[snapshotter.LabelOrdinal], 10, 32)
	if err != nil || claimOf(vs) == "" {
		return nil, spec, 0, refusef("snapshot %s of set %s has no ordinal or claim label", vs.Name, set)
	}
	if err := json.Unmarshal([]byte(vs.Annotations[snapshotter.AnnotationPVCSpec]), &spec); err != nil {
		return nil, spec, 0, refusef("snapshot %s of set %s has no readable PVC spec (%s)", vs.Name, set, snapshotter.AnnotationPVCSpec)
	}
	pvc := RestoredClaim(&appsv1.StatefulSet{}, ClaimRestore{
		PVC: snapshotter.ClaimName(claimOf(vs), name, int32(ord)), Snapshot: vs.Name, Ordinal: int32(ord), Spec: spec, RestoreSize: st.RestoreSize,
	}, "copy of "+set)
	pvc.Namespace = vs.Namespace
	delete(pvc.Annotations, snapshotter.AnnotationRollbackID)
	// The claim template: the recorded spec, bound to nothing and from no source.
	spec.VolumeName, spec.DataSource, spec.DataSourceRef = "", nil, nil
	return pvc, spec, int32(ord), nil
}

// contiguous is the first ordinal and the count of a set's ordinals, which a
// StatefulSet can only have without gaps.
func contiguous(set string, ordinals map[int32]bool) (start, replicas int32, err error) {
	start = -1
	for o := range ordinals {
		if start < 0 || o < start {
			start = o
		}
	}
	for ordinals[start+replicas] {
		replicas++
	}
	if int(replicas) != len(ordinals) {
		return 0, 0, refusef("set %s has snapshots of replicas that are not contiguous; a StatefulSet cannot hold them", set)
	}
	return start, replicas, nil
}

func copyStatefulSet(set, name, namespace string, tmpl corev1.PodTemplateSpec, start, replicas int32, claims map[string]corev1.PersistentVolumeClaimSpec) *appsv1.StatefulSet {
	labels := map[string]string{"app.kubernetes.io/name": name, snapshotter.LabelManagedBy: snapshotter.ManagedBy}
	tmpl.Labels = labels
	sts := &appsv1.StatefulSet{
		TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace,
			Labels:      map[string]string{policy.GuardLabel: "disabled", snapshotter.LabelManagedBy: snapshotter.ManagedBy},
			Annotations: map[string]string{policy.RestoredFrom: set}},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas, ServiceName: name, Template: tmpl,
			Selector:            &metav1.LabelSelector{MatchLabels: labels},
			PodManagementPolicy: appsv1.ParallelPodManagement,
		},
	}
	if start > 0 {
		sts.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: start}
	}
	names := make([]string, 0, len(claims))
	for n := range claims {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		sts.Spec.VolumeClaimTemplates = append(sts.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: n}, Spec: claims[n],
		})
	}
	return sts
}

// String says what the copy is, for the CLI.
func (c *Copy) String() string {
	return fmt.Sprintf("statefulset %s/%s (%s) with %s", c.StatefulSet.Namespace, c.StatefulSet.Name,
		snapshotter.Count(int(*c.StatefulSet.Spec.Replicas), "replica"), snapshotter.Count(len(c.Claims), "PVC"))
}
