package snapshotter

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

const driver = "hostpath.csi.snapgate.io"

func scheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = snapv1.AddToScheme(s)
	return s
}

func testStatefulSet(replicas int32, claims ...string) *appsv1.StatefulSet {
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg", UID: "uid-1", ResourceVersion: "100"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pg", Image: "postgres:16"}}}},
		},
		Status: appsv1.StatefulSetStatus{UpdateRevision: "pg-abc"},
	}
	for _, c := range claims {
		sts.Spec.VolumeClaimTemplates = append(sts.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: c}})
	}
	return sts
}

// volumes makes a bound PVC and its CSI PV for each name.
func volumes(names ...string) []client.Object {
	var objs []client.Object
	for _, n := range names {
		objs = append(objs,
			&corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: n},
				Spec:       corev1.PersistentVolumeClaimSpec{VolumeName: "pv-" + n},
				Status:     corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound},
			},
			&corev1.PersistentVolume{
				ObjectMeta: metav1.ObjectMeta{Name: "pv-" + n},
				Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{
					CSI: &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: n},
				}},
			})
	}
	return objs
}

func class(name, drv string, isDefault bool) *snapv1.VolumeSnapshotClass {
	c := &snapv1.VolumeSnapshotClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Driver: drv, DeletionPolicy: snapv1.VolumeSnapshotContentDelete}
	if isDefault {
		c.Annotations = map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"}
	}
	return c
}

func plannedPVCs(p *Plan) string {
	var out []string
	for _, s := range p.Snapshots {
		out = append(out, s.PVC+"@"+s.Class)
	}
	return strings.Join(out, " ")
}

func TestPlanSet(t *testing.T) {
	allVolumes := volumes("data-pg-0", "data-pg-1", "data-pg-2", "wal-pg-0", "wal-pg-1", "wal-pg-2")
	deleteOnScale := testStatefulSet(3, "data")
	deleteOnScale.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
		WhenScaled: appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
	}
	shifted := testStatefulSet(2, "data")
	shifted.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 1}

	tests := map[string]struct {
		change  Change
		policy  policy.Policy
		objs    []client.Object
		want    string
		wait    policy.Wait
		leftOut string
		wantErr []string
	}{
		"a template change snapshots every claim of every replica": {
			change: Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(3, "data", "wal"), NewReplicas: 3},
			objs:   append(allVolumes, class("hostpath", driver, true)),
			want:   "data-pg-0@hostpath wal-pg-0@hostpath data-pg-1@hostpath wal-pg-1@hostpath data-pg-2@hostpath wal-pg-2@hostpath",
		},
		"snapgate.io/claims narrows the claims": {
			change: Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(2, "data", "wal"), NewReplicas: 2},
			policy: policy.Policy{Claims: []string{"wal"}},
			objs:   append(allVolumes, class("hostpath", driver, true)),
			want:   "wal-pg-0@hostpath wal-pg-1@hostpath",
		},
		"a scale-down snapshots only the removed replicas": {
			change: Change{Reason: policy.ReasonScaleDown, Old: testStatefulSet(3, "data"), NewReplicas: 1},
			objs:   append(allVolumes, class("hostpath", driver, true)),
			want:   "data-pg-1@hostpath data-pg-2@hostpath",
		},
		"ordinals start where spec.ordinals.start says": {
			change: Change{Reason: policy.ReasonDelete, Old: shifted},
			objs:   append(volumes("data-pg-1", "data-pg-2"), class("hostpath", driver, true)),
			want:   "data-pg-1@hostpath data-pg-2@hostpath",
		},
		"a named class of the right driver is used": {
			change: Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(1, "data"), NewReplicas: 1},
			policy: policy.Policy{SnapshotClass: "slow"},
			objs:   append(volumes("data-pg-0"), class("hostpath", driver, true), class("slow", driver, false)),
			want:   "data-pg-0@slow",
		},
		"a scale-down that deletes PVCs always waits for ready": {
			change: Change{Reason: policy.ReasonScaleDown, Old: deleteOnScale, NewReplicas: 2},
			policy: policy.Policy{WaitFor: policy.WaitCut},
			objs:   append(allVolumes, class("hostpath", driver, true)),
			want:   "data-pg-2@hostpath",
			wait:   policy.WaitReady,
		},
		"a PVC that does not exist holds no data: it is left out, and named": {
			change:  Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(3, "data"), NewReplicas: 3},
			objs:    append(volumes("data-pg-0", "data-pg-1"), class("hostpath", driver, true)),
			want:    "data-pg-0@hostpath data-pg-1@hostpath",
			leftOut: "PVC data-pg-2 of replica 2 does not exist (it holds no data)",
		},
		"an unbound PVC is left out": {
			change: Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(1, "data"), NewReplicas: 1},
			objs: []client.Object{&corev1.PersistentVolumeClaim{
				ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data-pg-0"}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending},
			}},
			want: "", leftOut: "PVC data-pg-0 of replica 0 is Pending, not bound to a volume (it holds no data)",
		},
		"no default class is a denial that names both fixes": {
			change:  Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(1, "data"), NewReplicas: 1},
			objs:    append(volumes("data-pg-0"), class("other", "other.csi", true)),
			wantErr: []string{"no default VolumeSnapshotClass for driver " + driver, "is-default-class=true", "snapgate.io/snapshot-class"},
		},
		"two default classes are a denial": {
			change:  Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(1, "data"), NewReplicas: 1},
			objs:    append(volumes("data-pg-0"), class("a", driver, true), class("b", driver, true)),
			wantErr: []string{"2 default VolumeSnapshotClasses (a, b)"},
		},
		"a named class of another driver is a denial": {
			change:  Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(1, "data"), NewReplicas: 1},
			policy:  policy.Policy{SnapshotClass: "ebs"},
			objs:    append(volumes("data-pg-0"), class("ebs", "ebs.csi.aws.com", false)),
			wantErr: []string{`VolumeSnapshotClass "ebs"`, "is for driver ebs.csi.aws.com", "on driver " + driver},
		},
		"a named class that does not exist is a denial": {
			change:  Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(1, "data"), NewReplicas: 1},
			policy:  policy.Policy{SnapshotClass: "gone"},
			objs:    volumes("data-pg-0"),
			wantErr: []string{`VolumeSnapshotClass "gone" (from snapgate.io/snapshot-class) does not exist`},
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			r := fake.NewClientBuilder().WithScheme(scheme()).WithObjects(tc.objs...).Build()
			if tc.policy.WaitFor == "" {
				tc.policy.WaitFor = policy.WaitReady
			}
			plan, err := PlanSet(context.Background(), r, tc.change, tc.policy)
			if len(tc.wantErr) > 0 {
				var pe *PlanError
				if !errors.As(err, &pe) {
					t.Fatalf("err = %v, want a PlanError", err)
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := plannedPVCs(plan); got != tc.want {
				t.Errorf("planned %q\nwant    %q", got, tc.want)
			}
			var leftOut []string
			for _, l := range plan.LeftOut {
				leftOut = append(leftOut, l.String())
			}
			if got := strings.Join(leftOut, "; "); got != tc.leftOut {
				t.Errorf("left out %q\nwant     %q", got, tc.leftOut)
			}
			if tc.wait != "" && plan.WaitFor != tc.wait {
				t.Errorf("wait for %s, want %s", plan.WaitFor, tc.wait)
			}
			for _, s := range plan.Snapshots {
				if want := SnapshotName(s.PVC, plan.Set[len(plan.Set)-8:]); s.Name != want {
					t.Errorf("snapshot of %s is named %s, want %s", s.PVC, s.Name, want)
				}
			}
		})
	}
}

// reads counts a Reader's calls by kind of object.
type reads struct {
	client.Reader
	mu   sync.Mutex
	gets map[string]int
	list map[string]int
}

func (r *reads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	r.mu.Lock()
	r.gets[fmt.Sprintf("%T", obj)]++
	r.mu.Unlock()
	return r.Reader.Get(ctx, key, obj, opts...)
}

func (r *reads) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	r.mu.Lock()
	r.list[fmt.Sprintf("%T", list)]++
	r.mu.Unlock()
	return r.Reader.List(ctx, list, opts...)
}

// A plan reads the claims in one List (those the StatefulSet controller made
// carry its selector's labels), a claim made by hand with a Get, and the named
// class once: at 100 replicas a read per claim and class outran the client's
// rate limit inside the budget.
func TestPlanSetReadsTheClaimsInOneListAndTheClassOnce(t *testing.T) {
	sts := testStatefulSet(3, "data")
	sts.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pg"}}
	objs := volumes("data-pg-0", "data-pg-1", "data-pg-2")
	for _, o := range objs[:4] { // the claims of replicas 0 and 1; 2's was made by hand
		if pvc, ok := o.(*corev1.PersistentVolumeClaim); ok {
			pvc.Labels = map[string]string{"app": "pg"}
		}
	}
	objs = append(objs, class("fast", driver, false))
	r := &reads{Reader: fake.NewClientBuilder().WithScheme(scheme()).WithObjects(objs...).Build(), gets: map[string]int{}, list: map[string]int{}}
	plan, err := PlanSet(context.Background(), r, Change{Reason: policy.ReasonTemplate, Old: sts, NewReplicas: 3}, policy.Policy{SnapshotClass: "fast", WaitFor: policy.WaitReady})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := plannedPVCs(plan), "data-pg-0@fast data-pg-1@fast data-pg-2@fast"; got != want {
		t.Errorf("planned %q, want %q", got, want)
	}
	want := map[string]int{"*v1.PersistentVolumeClaim": 1, "*v1.PersistentVolume": 3, "*v1.VolumeSnapshotClass": 1}
	if !maps.Equal(r.gets, want) || !maps.Equal(r.list, map[string]int{"*v1.PersistentVolumeClaimList": 1}) {
		t.Errorf("reads: gets %v, lists %v; want gets %v and one List of PVCs", r.gets, r.list, want)
	}
}
