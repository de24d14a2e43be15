package rollback

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// strayPV is a PV of class, size and access mode that nothing claims: one an
// admin made by hand, or a retained one whose claimRef was cleared for reuse.
func strayPV(name, class, size string, mode corev1.PersistentVolumeAccessMode, mutate ...func(*corev1.PersistentVolume)) *corev1.PersistentVolume {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeSpec{
			StorageClassName: class,
			Capacity:         corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
			AccessModes:      []corev1.PersistentVolumeAccessMode{mode},
		},
		Status: corev1.PersistentVolumeStatus{Phase: corev1.VolumeAvailable},
	}
	for _, m := range mutate {
		m(pv)
	}
	return pv
}

func TestCapturingVolumesAreThoseKubernetesWouldBindInPlaceOfTheSnapshot(t *testing.T) {
	group := "snapshot.storage.k8s.io"
	claim := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data-pg-0"},
		Spec: corev1.PersistentVolumeClaimSpec{
			StorageClassName: ptr.To("fast"),
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}},
			DataSource:       &corev1.TypedLocalObjectReference{APIGroup: &group, Kind: "VolumeSnapshot", Name: "data-pg-0-abc"},
		},
	}
	rwo := corev1.ReadWriteOnce
	for name, tc := range map[string]struct {
		pv   *corev1.PersistentVolume
		want bool
	}{
		"an Available PV of its class, large enough": {strayPV("stray", "fast", "5Gi", rwo), true},
		"one pre-bound to its name": {strayPV("stray", "fast", "2Gi", rwo, func(pv *corev1.PersistentVolume) {
			pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "db", Name: "data-pg-0"}
		}), true},
		"one too small":               {strayPV("stray", "fast", "1Gi", rwo), false},
		"one of another class":        {strayPV("stray", "slow", "5Gi", rwo), false},
		"one without its access mode": {strayPV("stray", "fast", "5Gi", corev1.ReadOnlyMany), false},
		"one of block volume mode":    {strayPV("stray", "fast", "5Gi", rwo, func(pv *corev1.PersistentVolume) { pv.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock) }), false},
		"the replaced PVC's own, Released": {strayPV("stray", "fast", "5Gi", rwo, func(pv *corev1.PersistentVolume) {
			pv.Status.Phase = corev1.VolumeReleased
			pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "db", Name: "data-pg-0", UID: "old"}
		}), false},
		"one bound to another PVC": {strayPV("stray", "fast", "5Gi", rwo, func(pv *corev1.PersistentVolume) {
			pv.Status.Phase = corev1.VolumeBound
			pv.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "db", Name: "other", UID: "u"}
		}), false},
	} {
		t.Run(name, func(t *testing.T) {
			s := runtime.NewScheme()
			_ = clientgoscheme.AddToScheme(s)
			cl := fake.NewClientBuilder().WithScheme(s).WithObjects(tc.pv).Build()
			got, err := CapturingVolumes(context.Background(), cl, []*corev1.PersistentVolumeClaim{claim})
			if err != nil {
				t.Fatal(err)
			}
			if (len(got) == 1) != tc.want {
				t.Fatalf("captures = %v; want a capture: %v", got, tc.want)
			}
			if tc.want {
				msg := got.String()
				for _, want := range []string{"PV stray", "PVC db/data-pg-0", "snapshot data-pg-0-abc", "spec.claimRef", "kubectl get pv stray"} {
					if !strings.Contains(msg, want) {
						t.Errorf("message %q lacks %q", msg, want)
					}
				}
			}
		})
	}
}

// TestARollbackThatAnAvailablePVWouldTakeIsRefusedWithNothingChanged: the
// restored PVCs would bind to a stray PV of their class and start the database
// on its data; the rollback is refused before anything is touched, naming it.
func TestARollbackThatAnAvailablePVWouldTakeIsRefusedWithNothingChanged(t *testing.T) {
	cl := world(t, "", "")
	if err := cl.Create(context.Background(), strayPV("stray", "", "5Gi", corev1.ReadWriteOnce)); err != nil {
		t.Fatal(err)
	}
	seen := drive(t, controllerFor(cl), cl)
	got := state(t, cl)
	if got.st.Phase != policy.PhaseFailed || !strings.Contains(got.st.Message, "PV stray") ||
		!strings.Contains(got.st.Message, "would not hold set pg-abc's data") || !strings.HasSuffix(got.st.Message, "nothing was changed") {
		t.Fatalf("status = %+v (phases %v)", got.st, seen)
	}
	if *got.sts.Spec.Replicas != 3 || got.sts.Spec.Template.Spec.Containers[0].Image != "pg:17" || got.st.SafetySet != "" {
		t.Errorf("after the refusal: %d replicas, image %s, safety set %q; want the StatefulSet as it was", *got.sts.Spec.Replicas, got.sts.Spec.Template.Spec.Containers[0].Image, got.st.SafetySet)
	}
}

// TestNoPVCIsReplacedWhileAnAvailablePVWouldTakeIt: a stray PV that appears
// after the checks stops the replacing step, which deletes no PVC, says why,
// and goes on once the PV is gone.
func TestNoPVCIsReplacedWhileAnAvailablePVWouldTakeIt(t *testing.T) {
	ctx := context.Background()
	cl := world(t, policy.PhaseReplacing, "")
	stray := strayPV("stray", "", "5Gi", corev1.ReadWriteOnce)
	if err := cl.Create(ctx, stray); err != nil {
		t.Fatal(err)
	}
	c := controllerFor(cl)
	if _, err := c.Reconcile(ctx, reconcile.Request{NamespacedName: key}); err == nil {
		t.Fatal("the replacing step went on with a PV that would take a restored PVC")
	}
	var pvc corev1.PersistentVolumeClaim
	if err := cl.Get(ctx, types.NamespacedName{Namespace: "db", Name: "data-pg-1"}, &pvc); err != nil || pvc.Spec.VolumeName != "pv-old-1" || pvc.DeletionTimestamp != nil {
		t.Fatalf("PVC data-pg-1: %v, volume %q, deleting %v; want it kept on pv-old-1", err, pvc.Spec.VolumeName, pvc.DeletionTimestamp)
	}
	if st := state(t, cl).st; st.Phase != policy.PhaseReplacing || !strings.Contains(st.Message, "PV stray") || !strings.Contains(st.Message, "the rollback goes on") {
		t.Fatalf("status = %+v; want still replacing, naming the PV", st)
	}
	if err := cl.Delete(ctx, stray); err != nil {
		t.Fatal(err)
	}
	drive(t, c, cl)
	rolledBack(t, cl)
}
