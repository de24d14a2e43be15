package snapshotter

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// defaultGroupClassAnnotation marks a driver's default VolumeGroupSnapshotClass.
const defaultGroupClassAnnotation = "groupsnapshot.storage.kubernetes.io/is-default-class"

// planGroups decides how the plan's snapshots are cut together: as
// snapgate.io/group asks, or by default one VolumeGroupSnapshot per replica
// where a replica has two or more claims on a driver with a default
// VolumeGroupSnapshotClass. Asking for a grouping the driver cannot give is a
// PlanError naming the driver.
func planGroups(ctx context.Context, r client.Reader, plan *Plan) error {
	plan.Group = plan.Policy.Group
	if plan.Group == policy.GroupNone || len(plan.Snapshots) == 0 {
		plan.Group = policy.GroupNone
		return nil
	}
	drivers := map[string]bool{}
	perReplica := map[int32]int{}
	for _, s := range plan.Snapshots {
		drivers[s.driver] = true
		perReplica[s.Ordinal]++
	}
	asked := plan.Group != ""
	if !asked && slices.Max(slices.Collect(maps.Values(perReplica))) < 2 {
		plan.Group = policy.GroupNone
		return nil
	}
	if len(drivers) > 1 {
		if !asked {
			plan.Group = policy.GroupNone
			return nil
		}
		return planErrorf("%s: %s: the claims are on %d CSI drivers (%s), and a group snapshot is of one driver's volumes; set %s: none",
			policy.Group, plan.Group, len(drivers), strings.Join(slices.Sorted(maps.Keys(drivers)), ", "), policy.Group)
	}
	driver := plan.Snapshots[0].driver
	class, err := defaultGroupClass(ctx, r, driver)
	if err != nil {
		return err
	}
	switch {
	case class != "" && !asked:
		plan.Group = policy.GroupReplica
	case class == "" && !asked:
		plan.Group = policy.GroupNone
		return nil
	case class == "":
		return planErrorf("%s: %s: CSI driver %s has no default VolumeGroupSnapshotClass (groupsnapshot.storage.k8s.io), so its volumes cannot be cut together; "+
			"create one with the annotation %s=true, or set %s: none for one snapshot per PVC", policy.Group, plan.Group, driver, defaultGroupClassAnnotation, policy.Group)
	}
	plan.GroupClass = class
	return nil
}

// defaultGroupClass is driver's default VolumeGroupSnapshotClass; empty
// when it has none, or the cluster (or the reader's scheme) has no group
// snapshots at all.
func defaultGroupClass(ctx context.Context, r client.Reader, driver string) (string, error) {
	var list groupv1.VolumeGroupSnapshotClassList
	err := r.List(ctx, &list)
	if meta.IsNoMatchError(err) || apierrors.IsNotFound(err) || runtime.IsNotRegisteredError(err) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("list VolumeGroupSnapshotClasses: %w", err)
	}
	var defaults []string
	for _, c := range list.Items {
		if c.Driver == driver && c.Annotations[defaultGroupClassAnnotation] == "true" {
			defaults = append(defaults, c.Name)
		}
	}
	slices.Sort(defaults)
	if len(defaults) > 1 {
		return "", planErrorf("driver %s has %d default VolumeGroupSnapshotClasses (%s); keep one default", driver, len(defaults), strings.Join(defaults, ", "))
	}
	if len(defaults) == 0 {
		return "", nil
	}
	return defaults[0], nil
}

// Groups is the Backend of snapgate's sets: a plan that groups its snapshots
// is cut as VolumeGroupSnapshots, whose member VolumeSnapshots snapgate then
// labels and annotates as it does its own, so that list, restore, rollback
// and retention read them as any set; any other plan is PerPVC's.
type Groups struct {
	PerPVC
	// Poll is how often a group's members are looked for; 250 ms when zero.
	Poll time.Duration
}

var _ Backend = Groups{}

// Create implements Backend.
func (b Groups) Create(ctx context.Context, plan *Plan) error {
	if plan.Group == "" || plan.Group == policy.GroupNone {
		return b.PerPVC.Create(ctx, plan)
	}
	for _, members := range groupsOf(plan) {
		if err := b.createGroup(ctx, plan, members); err != nil {
			return err
		}
	}
	return nil
}

// groupsOf splits a plan's snapshots into its groups, by name.
func groupsOf(plan *Plan) map[string][]*PlannedSnapshot {
	groups := map[string][]*PlannedSnapshot{}
	for i := range plan.Snapshots {
		s := &plan.Snapshots[i]
		groups[groupName(plan, s)] = append(groups[groupName(plan, s)], s)
	}
	return groups
}

// createGroup cuts one group: its PVCs labelled with the group's name, the
// VolumeGroupSnapshot that selects them, then, once the snapshot controller
// has made the members, each member labelled as the set's.
func (b Groups) createGroup(ctx context.Context, plan *Plan, members []*PlannedSnapshot) error {
	name := groupName(plan, members[0])
	ns := plan.StatefulSet.Namespace
	for _, s := range members {
		patch := fmt.Appendf(nil, `{"metadata":{"labels":{%q:%q}}}`, LabelGroup, LabelValue(name))
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: s.PVC}}
		if err := b.Client.Patch(ctx, pvc, client.RawPatch(types.MergePatchType, patch)); err != nil {
			return fmt.Errorf("label PVC %s/%s for group snapshot %s: %w", ns, s.PVC, name, err)
		}
	}
	class := plan.GroupClass
	vgs := &groupv1.VolumeGroupSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{
			LabelSet: plan.Set, LabelStatefulSet: LabelValue(plan.StatefulSet.Name), LabelManagedBy: ManagedBy,
		}},
		Spec: groupv1.VolumeGroupSnapshotSpec{
			Source:                       groupv1.VolumeGroupSnapshotSource{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelGroup: LabelValue(name)}}},
			VolumeGroupSnapshotClassName: &class,
		},
	}
	err := b.Client.Create(ctx, vgs)
	if apierrors.IsAlreadyExists(err) {
		err = b.Reader.Get(ctx, client.ObjectKeyFromObject(vgs), vgs)
		if err == nil && vgs.Labels[LabelSet] != plan.Set {
			return planErrorf("VolumeGroupSnapshot %s/%s already exists and is not snapgate's for set %s; snapgate never overwrites one: rename or delete it", ns, name, plan.Set)
		}
	}
	if err != nil {
		return fmt.Errorf("create group snapshot %s/%s: %w", ns, name, err)
	}
	found, err := b.waitMembers(ctx, vgs, members)
	if err != nil {
		return err
	}
	for _, s := range members {
		if err := b.labelMember(ctx, plan, s, found[s.PVC], name); err != nil {
			return err
		}
	}
	return nil
}

// groupName names the VolumeGroupSnapshot of a member's group.
func groupName(plan *Plan, s *PlannedSnapshot) string {
	if plan.Group == policy.GroupReplica {
		return SnapshotName(plan.Set, strconv.Itoa(int(s.Ordinal)))
	}
	return plan.Set
}

// waitMembers waits until the snapshot controller has made a member of the
// group for every PVC, and returns them by PVC. The members carry no label
// snapgate chose, so no label-filtered informer sees them (and one of every
// VolumeSnapshot in the cluster is what snapgate's memory budget forbids):
// they are looked for in the namespace, as the API server has them, until
// they are all there.
func (b Groups) waitMembers(ctx context.Context, vgs *groupv1.VolumeGroupSnapshot, members []*PlannedSnapshot) (map[string]*snapv1.VolumeSnapshot, error) {
	found := map[string]*snapv1.VolumeSnapshot{}
	poll := b.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	var groupErr string
	err := wait.PollUntilContextCancel(ctx, poll, true, func(ctx context.Context) (bool, error) {
		var g groupv1.VolumeGroupSnapshot
		if err := b.Reader.Get(ctx, client.ObjectKeyFromObject(vgs), &g); err != nil {
			return false, fmt.Errorf("get group snapshot %s/%s: %w", vgs.Namespace, vgs.Name, err)
		}
		if st := g.Status; st != nil && st.Error != nil && st.Error.Message != nil && !transient(*st.Error.Message) {
			groupErr = *st.Error.Message
			return false, &SnapshotError{Snapshot: "group " + vgs.Name, PVC: pvcList(members), Message: groupErr}
		}
		var list snapv1.VolumeSnapshotList
		if err := b.Reader.List(ctx, &list, client.InNamespace(vgs.Namespace)); err != nil {
			return false, fmt.Errorf("list members of group snapshot %s/%s: %w", vgs.Namespace, vgs.Name, err)
		}
		for i := range list.Items {
			vs := &list.Items[i]
			if ownedBy(vs, g.UID) && vs.Spec.Source.PersistentVolumeClaimName != nil {
				found[*vs.Spec.Source.PersistentVolumeClaimName] = vs
			}
		}
		for _, s := range members {
			if found[s.PVC] == nil {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil && groupErr == "" && ctx.Err() != nil {
		return nil, fmt.Errorf("group snapshot %s/%s: its members are not all there yet: %w", vgs.Namespace, vgs.Name, err)
	}
	return found, err
}

func ownedBy(o metav1.Object, uid types.UID) bool {
	for _, ref := range o.GetOwnerReferences() {
		if ref.UID == uid {
			return true
		}
	}
	return false
}

func pvcList(members []*PlannedSnapshot) string {
	pvcs := make([]string, len(members))
	for i, s := range members {
		pvcs[i] = s.PVC
	}
	return strings.Join(pvcs, ", ")
}

// labelMember gives a group's member the labels and annotations of a
// snapshot of the set, and the name its PVC's snapshot has in the plan.
func (b Groups) labelMember(ctx context.Context, plan *Plan, s *PlannedSnapshot, member *snapv1.VolumeSnapshot, group string) error {
	want, err := plan.volumeSnapshot(s)
	if err != nil {
		return err
	}
	want.Annotations[AnnotationGroup] = group
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": want.Labels, "annotations": want.Annotations}})
	if err != nil {
		return err
	}
	if err := b.Client.Patch(ctx, member, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("label snapshot %s/%s, member of group %s, as set %s's: %w", member.Namespace, member.Name, group, plan.Set, err)
	}
	s.Name = member.Name
	return nil
}

// Delete implements Backend: the set's group snapshots (which take their
// members with them), then its snapshots.
func (b Groups) Delete(ctx context.Context, namespace, set string) error {
	err := b.Client.DeleteAllOf(ctx, &groupv1.VolumeGroupSnapshot{}, client.InNamespace(namespace),
		client.MatchingLabels{LabelSet: set, LabelManagedBy: ManagedBy})
	if err != nil && !apierrors.IsNotFound(err) && !meta.IsNoMatchError(err) && !runtime.IsNotRegisteredError(err) {
		return fmt.Errorf("delete group snapshots of set %s: %w", set, err)
	}
	return b.PerPVC.Delete(ctx, namespace, set)
}
