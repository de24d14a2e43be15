package rollback

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
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
	// Carried are the set's snapshots brought into the copy's namespace, when
	// it is another: a PVC can only be restored from a VolumeSnapshot of its
	// own namespace. Each is created before the Claims that restore from it.
	Carried []Carried
}

// Carried is a snapshot of another namespace made restorable in the copy's: a
// VolumeSnapshotContent of the same snapshot handle, with deletionPolicy
// Retain (deleting the copy never deletes the original's data), and the
// VolumeSnapshot bound to it.
type Carried struct {
	Content  *snapv1.VolumeSnapshotContent
	Snapshot *snapv1.VolumeSnapshot
	// From is the original snapshot, "namespace/name".
	From string
}

// ContentOf reads the VolumeSnapshotContent a snapshot is bound to.
type ContentOf func(*snapv1.VolumeSnapshot) (*snapv1.VolumeSnapshotContent, error)

// CopyOf plans the copy of set as the StatefulSet into, from the set's
// snapshots: every one must be ready, and its ordinals contiguous. The copy
// has labels of its own (so no Service of the original selects its pods) and
// snapgate.io/guard: disabled (a copy to read is not guarded, even in a
// guarded namespace). Into another namespace, each snapshot is carried across
// by its content, which contentOf reads; in the same one it is not called.
func CopyOf(set string, snaps []snapv1.VolumeSnapshot, into types.NamespacedName, contentOf ContentOf) (*Copy, error) {
	name := into.Name
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return nil, refusef("--into=%q: must be a StatefulSet name: %v", name, msgs)
	}
	if msgs := validation.IsDNS1123Label(into.Namespace); len(msgs) > 0 {
		return nil, refusef("--into=%q: the namespace %q must be a namespace name: %v", into.Namespace+"/"+name, into.Namespace, msgs)
	}
	if len(snaps) == 0 {
		return nil, refusef("there is no snapshot set %q in this namespace; `kubectl snapgate list sts/NAME` shows a StatefulSet's sets", set)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Name < snaps[j].Name })
	recorded, carrier, err := snapshotter.RecordedTemplate(set, snaps)
	if err != nil {
		return nil, refusef("%v", err)
	}
	var tmpl corev1.PodTemplateSpec
	if err := json.Unmarshal([]byte(recorded), &tmpl); err != nil {
		return nil, refusef("snapshot %s of set %s has no readable pod template (%s)", carrier.Name, set, snapshotter.AnnotationPodTemplate)
	}
	c := &Copy{}
	ordinals := map[int32]bool{}
	claims := map[string]corev1.PersistentVolumeClaimSpec{}
	for i := range snaps {
		claim, spec, ord, err := copyClaim(set, &snaps[i], into)
		if err != nil {
			return nil, err
		}
		if into.Namespace != snaps[i].Namespace {
			carried, err := carry(set, &snaps[i], contentOf, claim)
			if err != nil {
				return nil, err
			}
			c.Carried = append(c.Carried, carried)
		}
		c.Claims = append(c.Claims, claim)
		ordinals[ord], claims[claimOf(&snaps[i])] = true, spec
	}
	start, replicas, err := contiguous(set, ordinals)
	if err != nil {
		return nil, err
	}
	c.StatefulSet = copyStatefulSet(set, into, tmpl, start, replicas, claims)
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
func copyClaim(set string, vs *snapv1.VolumeSnapshot, into types.NamespacedName) (*corev1.PersistentVolumeClaim, corev1.PersistentVolumeClaimSpec, int32, error) {
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
		PVC: snapshotter.ClaimName(claimOf(vs), into.Name, int32(ord)), Snapshot: vs.Name, Ordinal: int32(ord), Spec: spec, RestoreSize: st.RestoreSize,
	}, "copy of "+set)
	pvc.Namespace = into.Namespace
	delete(pvc.Annotations, snapshotter.AnnotationRollbackID)
	// The claim template: the recorded spec, bound to nothing and from no source.
	spec.VolumeName, spec.DataSource, spec.DataSourceRef = "", nil, nil
	return pvc, spec, int32(ord), nil
}

// carry brings vs into the namespace of claim, the PVC that restores it, as a
// snapshot of the claim's name, and points the claim at it.
func carry(set string, vs *snapv1.VolumeSnapshot, contentOf ContentOf, claim *corev1.PersistentVolumeClaim) (Carried, error) {
	content, err := contentOf(vs)
	if err != nil {
		return Carried{}, fmt.Errorf("snapshot %s of set %s: read its content: %w", vs.Name, set, err)
	}
	if content.Status == nil || content.Status.SnapshotHandle == nil {
		return Carried{}, refusef("snapshot %s of set %s: its content %s has no snapshot handle yet; copy a set whose snapshots are all ready", vs.Name, set, content.Name)
	}
	ns, name := claim.Namespace, claim.Name
	from := vs.Namespace + "/" + vs.Name
	sum := sha256.Sum256([]byte(string(vs.UID) + "\x00" + ns + "/" + name))
	contentName := snapshotter.SnapshotName("snapgate-copy-"+ns+"-"+name, hex.EncodeToString(sum[:])[:8])
	labels := map[string]string{snapshotter.LabelManagedBy: snapshotter.ManagedBy, snapshotter.LabelCopyOf: snapshotter.LabelValue(set)}
	annotations := map[string]string{snapshotter.AnnotationCopyOf: from}
	class := content.Spec.VolumeSnapshotClassName
	if class == nil {
		class = vs.Spec.VolumeSnapshotClassName
	}
	claim.Spec.DataSource.Name = name
	return Carried{From: from,
		Content: &snapv1.VolumeSnapshotContent{
			ObjectMeta: metav1.ObjectMeta{Name: contentName, Labels: labels, Annotations: annotations},
			Spec: snapv1.VolumeSnapshotContentSpec{
				DeletionPolicy: snapv1.VolumeSnapshotContentRetain, Driver: content.Spec.Driver,
				Source:                  snapv1.VolumeSnapshotContentSource{SnapshotHandle: content.Status.SnapshotHandle},
				VolumeSnapshotClassName: class, SourceVolumeMode: content.Spec.SourceVolumeMode,
				VolumeSnapshotRef: corev1.ObjectReference{Namespace: ns, Name: name},
			},
		},
		Snapshot: &snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels, Annotations: annotations},
			Spec: snapv1.VolumeSnapshotSpec{
				Source: snapv1.VolumeSnapshotSource{VolumeSnapshotContentName: &contentName}, VolumeSnapshotClassName: class,
			},
		},
	}, nil
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

func copyStatefulSet(set string, into types.NamespacedName, tmpl corev1.PodTemplateSpec, start, replicas int32, claims map[string]corev1.PersistentVolumeClaimSpec) *appsv1.StatefulSet {
	name, namespace := into.Name, into.Namespace
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

// Reference is an object of its own namespace that a pod template cannot start
// without.
type Reference struct {
	// Kind is Secret, ConfigMap or ServiceAccount.
	Kind, Name string
	// By says where the template names it.
	By string
}

// References lists what tmpl's pods need of their namespace: the Secrets and
// ConfigMaps its env, envFrom and volumes name and do not mark optional, and
// its ServiceAccount (unless the default).
func References(tmpl *corev1.PodTemplateSpec) []Reference {
	var refs []Reference
	add := func(kind, name string, optional *bool, by string) {
		if name != "" && (optional == nil || !*optional) {
			refs = append(refs, Reference{Kind: kind, Name: name, By: by})
		}
	}
	if sa := tmpl.Spec.ServiceAccountName; sa != "" && sa != "default" {
		add("ServiceAccount", sa, nil, "serviceAccountName")
	}
	containers := append(append([]corev1.Container{}, tmpl.Spec.InitContainers...), tmpl.Spec.Containers...)
	for _, c := range containers {
		for _, e := range c.Env {
			if f := e.ValueFrom; f != nil && f.SecretKeyRef != nil {
				add("Secret", f.SecretKeyRef.Name, f.SecretKeyRef.Optional, "env "+e.Name+" of container "+c.Name)
			} else if f != nil && f.ConfigMapKeyRef != nil {
				add("ConfigMap", f.ConfigMapKeyRef.Name, f.ConfigMapKeyRef.Optional, "env "+e.Name+" of container "+c.Name)
			}
		}
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil {
				add("Secret", e.SecretRef.Name, e.SecretRef.Optional, "envFrom of container "+c.Name)
			}
			if e.ConfigMapRef != nil {
				add("ConfigMap", e.ConfigMapRef.Name, e.ConfigMapRef.Optional, "envFrom of container "+c.Name)
			}
		}
	}
	for _, v := range tmpl.Spec.Volumes {
		switch {
		case v.Secret != nil:
			add("Secret", v.Secret.SecretName, v.Secret.Optional, "volume "+v.Name)
		case v.ConfigMap != nil:
			add("ConfigMap", v.ConfigMap.Name, v.ConfigMap.Optional, "volume "+v.Name)
		case v.Projected != nil:
			for _, s := range v.Projected.Sources {
				if s.Secret != nil {
					add("Secret", s.Secret.Name, s.Secret.Optional, "volume "+v.Name)
				}
				if s.ConfigMap != nil {
					add("ConfigMap", s.ConfigMap.Name, s.ConfigMap.Optional, "volume "+v.Name)
				}
			}
		}
	}
	return refs
}
