package rollback

import (
	"context"
	"fmt"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// world is a StatefulSet pg that was upgraded from pg:16 to pg:17 after set
// pg-abc was taken, and whose rollback to that set was interrupted at phase:
// every step before phase has done its work, none after has.
func world(t *testing.T, phase policy.RollbackPhase) client.Client {
	t.Helper()
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = snapv1.AddToScheme(s)
	order := []policy.RollbackPhase{policy.PhaseRetaining, policy.PhaseScalingDown, policy.PhaseReplacing, policy.PhaseRestoring}
	past := func(p policy.RollbackPhase) bool {
		for _, o := range order {
			if o == phase {
				return false
			}
			if o == p {
				return true
			}
		}
		return false
	}
	sts := testSTS(3)
	st := policy.RollbackState{Request: "latest", Set: "pg-abc", Phase: phase, ID: "id-1", SafetySet: "pg-safe"}
	sts.Annotations = map[string]string{policy.RollbackTo: "latest", policy.RollbackStatus: st.String()}
	if past(policy.PhaseScalingDown) || phase == policy.PhaseScalingDown {
		zero := int32(0)
		sts.Spec.Replicas = &zero
	}
	objs := []client.Object{sts}
	for i := range 3 {
		ord := fmt.Sprint(i)
		vs := snap(ord)
		vs.UID = types.UID("vs-" + ord)
		content := &snapv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: "content-" + ord},
			Spec: snapv1.VolumeSnapshotContentSpec{VolumeSnapshotRef: corev1.ObjectReference{Namespace: "db", Name: vs.Name, UID: vs.UID}}}
		reclaim := corev1.PersistentVolumeReclaimDelete
		if past(policy.PhaseRetaining) {
			reclaim = corev1.PersistentVolumeReclaimRetain
		}
		pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-old-" + ord}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeReclaimPolicy: reclaim}}
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data-pg-" + ord},
			Spec: corev1.PersistentVolumeClaimSpec{VolumeName: pv.Name}}
		// A crash in the middle of replacing: replica 0 is done, the others not.
		if past(policy.PhaseReplacing) || (phase == policy.PhaseReplacing && i == 0) {
			r, _ := CheckSet(testSTS(3), "pg-abc", []snapv1.VolumeSnapshot{snap("0"), snap("1"), snap("2")}, boundOK)
			pvc = RestoredClaim(sts, r.Claims[i], "id-1")
		}
		objs = append(objs, &vs, content, pv, pvc)
	}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
}

// TestRollbackResumesFromEveryStepToTheSameResult restarts an interrupted
// rollback at each of its steps and checks that every one ends the same way.
func TestRollbackResumesFromEveryStepToTheSameResult(t *testing.T) {
	for _, phase := range []policy.RollbackPhase{policy.PhaseRetaining, policy.PhaseScalingDown, policy.PhaseReplacing, policy.PhaseRestoring} {
		t.Run(string(phase), func(t *testing.T) {
			cl := world(t, phase)
			c := &Controller{Client: cl, Reader: cl, Clientset: kubefake.NewClientset()}
			key := types.NamespacedName{Namespace: "db", Name: "pg"}
			if _, err := c.Reconcile(context.Background(), reconcile.Request{NamespacedName: key}); err != nil {
				t.Fatal(err)
			}
			var sts appsv1.StatefulSet
			if err := cl.Get(context.Background(), key, &sts); err != nil {
				t.Fatal(err)
			}
			st, _ := policy.ParseRollbackState(sts.Annotations)
			if st.Phase != policy.PhaseSucceeded || st.SafetySet != "pg-safe" {
				t.Fatalf("status = %+v", st)
			}
			if _, asked := sts.Annotations[policy.RollbackTo]; asked {
				t.Error("the trigger is still there")
			}
			if img := sts.Spec.Template.Spec.Containers[0].Image; img != "pg:16" || *sts.Spec.Replicas != 3 {
				t.Errorf("spec = %s × %d, want pg:16 × 3", img, *sts.Spec.Replicas)
			}
			for i := range 3 {
				var pvc corev1.PersistentVolumeClaim
				if err := cl.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: fmt.Sprintf("data-pg-%d", i)}, &pvc); err != nil {
					t.Fatal(err)
				}
				if pvc.Spec.DataSource == nil || pvc.Spec.DataSource.Name != fmt.Sprintf("data-pg-%d-abc", i) || pvc.Annotations[AnnotationRollbackID] != "id-1" {
					t.Errorf("PVC %s: dataSource %+v, annotations %v", pvc.Name, pvc.Spec.DataSource, pvc.Annotations)
				}
				var pv corev1.PersistentVolume
				if err := cl.Get(context.Background(), types.NamespacedName{Name: fmt.Sprintf("pv-old-%d", i)}, &pv); err != nil {
					t.Fatal(err)
				}
				if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
					t.Errorf("old PV %s: reclaim %s, want Retain", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy)
				}
			}
		})
	}
}

// TestRollbackNeverDeletesAClaimWhoseVolumeWouldGo: a PVC bound to a volume
// that is not Retain (changed by someone since) is not deleted; the step fails
// and is retried.
func TestRollbackNeverDeletesAClaimWhoseVolumeWouldGo(t *testing.T) {
	cl := world(t, policy.PhaseReplacing)
	pv := &corev1.PersistentVolume{}
	if err := cl.Get(context.Background(), types.NamespacedName{Name: "pv-old-1"}, pv); err != nil {
		t.Fatal(err)
	}
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	if err := cl.Update(context.Background(), pv); err != nil {
		t.Fatal(err)
	}
	c := &Controller{Client: cl, Reader: cl, Clientset: kubefake.NewClientset()}
	_, err := c.Reconcile(context.Background(), reconcile.Request{NamespacedName: types.NamespacedName{Namespace: "db", Name: "pg"}})
	if err == nil {
		t.Fatal("the rollback went on with a volume that would be deleted")
	}
	var pvc corev1.PersistentVolumeClaim
	if err := cl.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "data-pg-1"}, &pvc); err != nil || pvc.Spec.VolumeName != "pv-old-1" {
		t.Fatalf("PVC data-pg-1: %v, volume %q; want it kept on pv-old-1", err, pvc.Spec.VolumeName)
	}
	var sts appsv1.StatefulSet
	_ = cl.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "pg"}, &sts)
	if st, _ := policy.ParseRollbackState(sts.Annotations); st.Phase != policy.PhaseReplacing || st.Message == "" {
		t.Fatalf("status = %+v; want still ReplacingClaims, with the reason", st)
	}
}
