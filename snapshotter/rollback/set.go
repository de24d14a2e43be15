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
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Refusal is a rollback that cannot be done as asked; nothing was changed, and
// its message says why and what to do.
type Refusal struct{ msg string }

func (r *Refusal) Error() string { return r.msg }

func refusef(format string, args ...any) error { return &Refusal{msg: fmt.Sprintf(format, args...)} }

// Restore is what a rollback to one set brings back.
type Restore struct {
	// Set is the set's name.
	Set string
	// Reason is the change the set was taken for.
	Reason string
	// Template is the pod template recorded when the set was taken.
	Template corev1.PodTemplateSpec
	// Replicas is the replica count recorded when the set was taken.
	Replicas int32
	// Claims are the PVCs to replace, each with its snapshot, by name.
	Claims []ClaimRestore
	// OtherUID is set when the set was taken of an earlier StatefulSet of the
	// same name (deleted and created again): allowed, and said so.
	OtherUID bool
}

// ClaimRestore is one PVC to be replaced by a copy of its snapshot.
type ClaimRestore struct {
	PVC      string
	Snapshot string
	Ordinal  int32
	// Spec is the PVC's spec when the set was taken.
	Spec corev1.PersistentVolumeClaimSpec
	// RestoreSize is the least size a volume restored from the snapshot needs.
	RestoreSize *resource.Quantity
}

// ResolveSet turns snapgate.io/rollback-to into a set name: "latest" is the
// newest set taken before a change that is ready. A rollback's own safety set
// counts only when named, so that "latest" twice does not undo the first.
func ResolveSet(request string, sets []snapshotter.SetInfo, sts string) (string, error) {
	if request != "latest" {
		return request, nil
	}
	for _, s := range sets {
		if s.Reason != string(policy.ReasonRollback) && s.Snapshots > 0 && s.Ready == s.Snapshots {
			return s.Name, nil
		}
	}
	if len(sets) == 0 {
		return "", refusef("statefulset %s has no snapshot sets, so there is nothing to roll back to", sts)
	}
	return "", refusef("statefulset %s has no ready snapshot set taken before a change; `kubectl snapgate list sts/%s` shows its sets; name one in %s", sts, sts, policy.RollbackTo)
}

// CheckSet checks that the snapshots of a set can restore this StatefulSet, and
// says what they restore. Every snapshot must belong to this StatefulSet by its
// labels and by its source PVC (a claim template of this StatefulSet at the
// recorded ordinal), and be ready; the set must cover every ordinal it was taken
// for. bound reports whether a snapshot's VolumeSnapshotContent points back at it.
func CheckSet(sts *appsv1.StatefulSet, set string, snaps []snapv1.VolumeSnapshot, bound func(*snapv1.VolumeSnapshot) error) (*Restore, error) {
	if len(snaps) == 0 {
		return nil, refusef("statefulset %s/%s has no snapshot set %q; `kubectl snapgate list sts/%s -n %s` shows the sets it has",
			sts.Namespace, sts.Name, set, sts.Name, sts.Namespace)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Name < snaps[j].Name })
	first := &snaps[0]
	r := &Restore{Set: set, Reason: first.Annotations[snapshotter.AnnotationReason]}
	ann := first.Annotations
	tmpl, carrier, err := snapshotter.RecordedTemplate(set, snaps)
	if err != nil {
		return nil, refusef("%v: it cannot restore the StatefulSet", err)
	}
	if err := json.Unmarshal([]byte(tmpl), &r.Template); err != nil {
		return nil, refusef("snapshot %s of set %s has no readable pod template (%s): it cannot restore the StatefulSet", carrier.Name, set, snapshotter.AnnotationPodTemplate)
	}
	before, err := strconv.ParseInt(ann[snapshotter.AnnotationReplicasBefore], 10, 32)
	if err != nil || before < 0 {
		return nil, refusef("snapshot %s of set %s has no readable replica count (%s)", first.Name, set, snapshotter.AnnotationReplicasBefore)
	}
	r.Replicas = int32(before)
	r.OtherUID = ann[snapshotter.AnnotationStatefulSetUID] != string(sts.UID)

	claims := map[string]string{} // label value -> claim template name
	for _, t := range sts.Spec.VolumeClaimTemplates {
		claims[snapshotter.LabelValue(t.Name)] = t.Name
	}
	perOrdinal := map[int32]int{}
	for i := range snaps {
		c, err := checkSnapshot(sts, set, &snaps[i], first, claims, bound)
		if err != nil {
			return nil, err
		}
		perOrdinal[c.Ordinal]++
		r.Claims = append(r.Claims, c)
	}
	if missing := missingOrdinals(sts, r, first, perOrdinal); len(missing) > 0 {
		return nil, refusef("set %s lacks snapshots of replicas %s (deleted since?); it cannot restore them", set, strings.Join(missing, ", "))
	}
	return r, nil
}

// checkSnapshot checks one snapshot of a set against the StatefulSet and the
// set's first snapshot, and says which PVC it restores. claims maps label
// values to the StatefulSet's claim templates.
func checkSnapshot(sts *appsv1.StatefulSet, set string, vs, first *snapv1.VolumeSnapshot, claims map[string]string, bound func(*snapv1.VolumeSnapshot) error) (ClaimRestore, error) {
	ann := first.Annotations
	if vs.Labels[snapshotter.LabelStatefulSet] != snapshotter.LabelValue(sts.Name) {
		return ClaimRestore{}, refusef("snapshot %s of set %s belongs to statefulset %q, not %s", vs.Name, set, vs.Labels[snapshotter.LabelStatefulSet], sts.Name)
	}
	if vs.Annotations[snapshotter.AnnotationReplicasBefore] != ann[snapshotter.AnnotationReplicasBefore] {
		return ClaimRestore{}, refusef("the snapshots of set %s disagree about the replica count they record (%s and %s): it is not one set", set, first.Name, vs.Name)
	}
	ord, err := strconv.ParseInt(vs.Labels[snapshotter.LabelOrdinal], 10, 32)
	if err != nil {
		return ClaimRestore{}, refusef("snapshot %s of set %s has no ordinal label %s", vs.Name, set, snapshotter.LabelOrdinal)
	}
	claim, ok := claims[vs.Labels[snapshotter.LabelClaim]]
	if !ok {
		return ClaimRestore{}, refusef("snapshot %s of set %s is of claim template %q, which statefulset %s does not have", vs.Name, set, vs.Labels[snapshotter.LabelClaim], sts.Name)
	}
	pvc := snapshotter.ClaimName(claim, sts.Name, int32(ord))
	if src := vs.Spec.Source.PersistentVolumeClaimName; src == nil || *src != pvc {
		return ClaimRestore{}, refusef("snapshot %s of set %s was not taken of PVC %s, the PVC of its claim template and ordinal", vs.Name, set, pvc)
	}
	if vs.DeletionTimestamp != nil {
		return ClaimRestore{}, refusef("snapshot %s of set %s is being deleted", vs.Name, set)
	}
	st := vs.Status
	if st == nil || st.ReadyToUse == nil || !*st.ReadyToUse {
		msg := "not ready to use yet"
		if st != nil && st.Error != nil && st.Error.Message != nil {
			msg = "failed: " + *st.Error.Message
		}
		return ClaimRestore{}, refusef("snapshot %s of set %s is %s; roll back to a set whose snapshots are all ready", vs.Name, set, msg)
	}
	if err := bound(vs); err != nil {
		return ClaimRestore{}, refusef("snapshot %s of set %s: %v", vs.Name, set, err)
	}
	c := ClaimRestore{PVC: pvc, Snapshot: vs.Name, Ordinal: int32(ord), RestoreSize: st.RestoreSize}
	if err := json.Unmarshal([]byte(vs.Annotations[snapshotter.AnnotationPVCSpec]), &c.Spec); err != nil {
		return ClaimRestore{}, refusef("snapshot %s of set %s has no readable PVC spec (%s)", vs.Name, set, snapshotter.AnnotationPVCSpec)
	}
	return c, nil
}

// missingOrdinals are the ordinals the set was taken for with fewer snapshots
// than the others, not counting the PVCs the set left out because they held
// no data (a rollback leaves those as they are).
func missingOrdinals(sts *appsv1.StatefulSet, r *Restore, first *snapv1.VolumeSnapshot, perOrdinal map[int32]int) []string {
	leftOut := map[int32]int{}
	for _, pvc := range strings.Split(first.Annotations[snapshotter.AnnotationLeftOut], ",") {
		if o, ok := ordinalOf(sts, pvc); ok {
			leftOut[o]++
		}
	}
	start := snapshotter.StartOrdinal(sts)
	from := start
	if r.Reason == string(policy.ReasonScaleDown) {
		after, _ := strconv.ParseInt(first.Annotations[snapshotter.AnnotationReplicasAfter], 10, 32)
		from = start + int32(after)
	}
	most := 0
	for _, n := range perOrdinal {
		most = max(most, n)
	}
	var missing []string
	for o := from; o < start+r.Replicas; o++ {
		if perOrdinal[o]+leftOut[o] < most {
			missing = append(missing, strconv.Itoa(int(o)))
		}
	}
	return missing
}

// ordinalOf is the ordinal of pvc, if it is the PVC of one of the
// StatefulSet's claim templates.
func ordinalOf(sts *appsv1.StatefulSet, pvc string) (int32, bool) {
	for _, t := range sts.Spec.VolumeClaimTemplates {
		if rest, ok := strings.CutPrefix(pvc, t.Name+"-"+sts.Name+"-"); ok {
			if n, err := strconv.ParseInt(rest, 10, 32); err == nil && n >= 0 && snapshotter.ClaimName(t.Name, sts.Name, int32(n)) == pvc {
				return int32(n), true
			}
		}
	}
	return 0, false
}

// RestoredClaim is the PVC that replaces c: its recorded spec, bound to no
// volume, provisioned from the snapshot, at least as large as the snapshot.
func RestoredClaim(sts *appsv1.StatefulSet, c ClaimRestore, id string) *corev1.PersistentVolumeClaim {
	spec := *c.Spec.DeepCopy()
	spec.VolumeName = ""
	spec.DataSourceRef = nil
	group := snapv1.GroupName
	spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: c.Snapshot}
	if c.RestoreSize != nil {
		if spec.Resources.Requests == nil {
			spec.Resources.Requests = corev1.ResourceList{}
		}
		if req, ok := spec.Resources.Requests[corev1.ResourceStorage]; !ok || req.Cmp(*c.RestoreSize) < 0 {
			spec.Resources.Requests[corev1.ResourceStorage] = *c.RestoreSize
		}
	}
	// The labels the StatefulSet controller gives the PVCs it makes.
	labels := map[string]string{}
	for _, t := range sts.Spec.VolumeClaimTemplates {
		if c.PVC == snapshotter.ClaimName(t.Name, sts.Name, c.Ordinal) {
			for k, v := range t.Labels {
				labels[k] = v
			}
		}
	}
	if sts.Spec.Selector != nil {
		for k, v := range sts.Spec.Selector.MatchLabels {
			labels[k] = v
		}
	}
	pvc := &corev1.PersistentVolumeClaim{Spec: spec}
	pvc.Name, pvc.Namespace, pvc.Labels = c.PVC, sts.Namespace, labels
	pvc.Annotations = map[string]string{snapshotter.AnnotationRestoredFrom: c.Snapshot, snapshotter.AnnotationRollbackID: id}
	return pvc
}
