package snapshotter

import (
	"context"
	"strings"
	"testing"

	groupv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumegroupsnapshot/v1"
	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

func groupClass(drv string) *groupv1.VolumeGroupSnapshotClass {
	return &groupv1.VolumeGroupSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: "group-" + drv,
		Annotations: map[string]string{defaultGroupClassAnnotation: "true"}}, Driver: drv, DeletionPolicy: snapv1.VolumeSnapshotContentDelete}
}

// groupWorld is pg with claims data and wal on 2 replicas, and, when withClass,
// a default group class of their driver. Creating a VolumeGroupSnapshot makes
// its members as the snapshot controller does: one unlabelled VolumeSnapshot
// of each PVC its selector matches, owned by the group.
func groupWorld(t *testing.T, withClass bool) client.WithWatch {
	t.Helper()
	s := scheme()
	_ = groupv1.AddToScheme(s)
	objs := append(volumes("data-pg-0", "wal-pg-0", "data-pg-1", "wal-pg-1"), class("snap", driver, true))
	if withClass {
		objs = append(objs, groupClass(driver))
	}
	controller := interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		vgs, ok := obj.(*groupv1.VolumeGroupSnapshot)
		if !ok {
			return c.Create(ctx, obj, opts...)
		}
		vgs.UID = types.UID("uid-" + vgs.Name)
		if err := c.Create(ctx, obj, opts...); err != nil {
			return err
		}
		var pvcs corev1.PersistentVolumeClaimList
		if err := c.List(ctx, &pvcs, client.InNamespace(vgs.Namespace), client.MatchingLabels(vgs.Spec.Source.Selector.MatchLabels)); err != nil {
			return err
		}
		for _, p := range pvcs.Items {
			pvc := p.Name
			member := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: vgs.Namespace, Name: "snapshot-" + pvc,
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "groupsnapshot.storage.k8s.io/v1", Kind: "VolumeGroupSnapshot", Name: vgs.Name, UID: vgs.UID}}},
				Spec: snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}}}
			if err := c.Create(ctx, member); err != nil {
				return err
			}
		}
		return nil
	}}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithInterceptorFuncs(controller).Build()
}

func groupChange() Change {
	return Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(2, "data", "wal"), NewTemplate: &corev1.PodTemplateSpec{}, NewReplicas: 2}
}

func TestPlanGroupsEachReplicaWhereTheDriverCanAndItIsAsked(t *testing.T) {
	ctx := context.Background()
	for name, tc := range map[string]struct {
		class bool
		asked policy.Grouping
		want  policy.Grouping
		err   string
	}{
		"a driver with a group class, two claims: by replica": {class: true, want: policy.GroupReplica},
		"no group class: one snapshot per PVC":                {class: false, want: policy.GroupNone},
		"none asked":                                          {class: true, asked: policy.GroupNone, want: policy.GroupNone},
		"the whole StatefulSet asked":                         {class: true, asked: policy.GroupStatefulSet, want: policy.GroupStatefulSet},
		"asked of a driver that cannot": {class: false, asked: policy.GroupReplica,
			err: "snapgate.io/group: replica: CSI driver hostpath.csi.snapgate.io has no default VolumeGroupSnapshotClass"},
	} {
		plan, err := PlanSet(ctx, groupWorld(t, tc.class), groupChange(), policy.Policy{Group: tc.asked, WaitFor: policy.WaitReady})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v; want %q", name, err, tc.err)
			}
			continue
		}
		if err != nil || plan.Group != tc.want || (tc.want != policy.GroupNone) != (plan.GroupClass == "group-"+driver) {
			t.Errorf("%s: group %q, class %q, %v; want %q", name, plan.Group, plan.GroupClass, err, tc.want)
		}
	}
}

// Cut as one group per replica: each replica's PVCs labelled for its group,
// the members labelled and annotated as the set's snapshots, and the plan
// and its progress know them by their names; Delete takes the groups too.
func TestGroupsCutEachReplicaAsOneGroupOfLabelledMembers(t *testing.T) {
	ctx := context.Background()
	c := groupWorld(t, true)
	plan, err := PlanSet(ctx, c, groupChange(), policy.Policy{WaitFor: policy.WaitReady})
	if err != nil {
		t.Fatal(err)
	}
	b := Groups{PerPVC: PerPVC{Client: c, Reader: c, Snapshots: c}}
	if err := b.Create(ctx, plan); err != nil {
		t.Fatal(err)
	}
	var groups groupv1.VolumeGroupSnapshotList
	if err := c.List(ctx, &groups, client.InNamespace("db")); err != nil || len(groups.Items) != 2 {
		t.Fatalf("%d group snapshots, %v; want one per replica", len(groups.Items), err)
	}
	var members []snapv1.VolumeSnapshot
	for _, s := range plan.Snapshots {
		if s.Name != "snapshot-"+s.PVC {
			t.Errorf("the plan names %s's snapshot %s, not its member", s.PVC, s.Name)
		}
		var vs snapv1.VolumeSnapshot
		if err := c.Get(ctx, types.NamespacedName{Namespace: "db", Name: s.Name}, &vs); err != nil {
			t.Fatal(err)
		}
		ord := s.PVC[len(s.PVC)-1:]
		if vs.Labels[LabelSet] != plan.Set || vs.Labels[LabelOrdinal] != ord || vs.Labels[LabelClaim] != s.Claim ||
			vs.Annotations[AnnotationGroup] != plan.Set+"-"+ord {
			t.Errorf("member %s: labels %v, group %q", vs.Name, vs.Labels, vs.Annotations[AnnotationGroup])
		}
		members = append(members, vs)
	}
	if tmpl, carrier, err := RecordedTemplate(plan.Set, members); err != nil || tmpl == "" || carrier.Name != plan.Snapshots[0].Name {
		t.Errorf("the members record template %q on %v, %v; want it on %s", tmpl, carrier, err, plan.Snapshots[0].Name)
	}
	e := &Engine{Client: c, Reader: c, Snapshots: c, Backend: b}
	skeleton := skeleton(groupChange(), policy.Policy{WaitFor: policy.WaitReady})
	if prog, err := e.progress(ctx, skeleton); err != nil || prog.Found != 4 || skeleton.SnapshotsByPVC()["wal-pg-1"] != "snapshot-wal-pg-1" {
		t.Errorf("a retry's plan finds %d of the set (%v) and records %v", prog.Found, err, skeleton.SnapshotsByPVC())
	}
	if err := b.Delete(ctx, "db", plan.Set); err != nil {
		t.Fatal(err)
	}
	if err := c.List(ctx, &groups, client.InNamespace("db")); err != nil || len(groups.Items) != 0 {
		t.Errorf("%d group snapshots after Delete", len(groups.Items))
	}
}
