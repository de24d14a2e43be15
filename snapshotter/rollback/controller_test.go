package rollback

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

const driver = "hostpath.csi.snapgate.io"

var key = types.NamespacedName{Namespace: "db", Name: "pg"}

// order is the phases of a rollback, in the order its steps run.
var order = []policy.RollbackPhase{policy.PhaseChecking, policy.PhaseSafetySet, policy.PhaseRetaining,
	policy.PhaseScalingDown, policy.PhaseReplacing, policy.PhaseRestoring}

// world is a StatefulSet pg that was upgraded from pg:16 to pg:17 after set
// pg-abc was taken, and whose rollback to that set was interrupted at phase
// (or, with phase "", was just asked for): every step before phase has done
// its work, none after has. The snapshot controller the client plays cuts
// every snapshot it is given; fail makes it fail them instead.
func world(t *testing.T, phase policy.RollbackPhase, fail string) client.WithWatch {
	t.Helper()
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = snapv1.AddToScheme(s)
	at := len(order)
	for i, p := range order {
		if p == phase {
			at = i
		}
	}
	if phase == "" {
		at = -1
	}
	past := func(p policy.RollbackPhase) bool {
		for i, o := range order {
			if o == p {
				return i < at
			}
		}
		return false
	}
	sts := testSTS(3)
	sts.Annotations = map[string]string{policy.RollbackTo: "latest"}
	if phase != "" {
		st := policy.RollbackState{Request: "latest", Phase: phase, ID: "id-1"}
		if past(policy.PhaseChecking) {
			st.Set = "pg-abc"
		}
		if past(policy.PhaseSafetySet) {
			st.SafetySet = "pg-safe"
		}
		sts.Annotations[policy.RollbackStatus] = st.String()
	}
	if past(policy.PhaseRetaining) {
		sts.Spec.Replicas = ptr.To[int32](0)
	}
	objs := []client.Object{sts, &snapv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: "hostpath", Annotations: map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"}},
		Driver:     driver, DeletionPolicy: snapv1.VolumeSnapshotContentDelete,
	}}
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
		pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-old-" + ord}, Spec: corev1.PersistentVolumeSpec{
			PersistentVolumeReclaimPolicy: reclaim,
			PersistentVolumeSource:        corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: driver, VolumeHandle: ord}},
		}}
		// Held by kubernetes.io/pvc-protection until the test says its pod is gone.
		pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data-pg-" + ord, Finalizers: []string{"kubernetes.io/pvc-protection"}},
			Spec: corev1.PersistentVolumeClaimSpec{VolumeName: pv.Name}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}}
		// A crash in the middle of replacing: replica 0 is done, the others not.
		if past(policy.PhaseReplacing) || (phase == policy.PhaseReplacing && i == 0) {
			r, _ := CheckSet(testSTS(3), "pg-abc", []snapv1.VolumeSnapshot{snap("0"), snap("1"), snap("2")}, boundOK)
			pvc = RestoredClaim(sts, r.Claims[i], "id-1")
		}
		objs = append(objs, &vs, content, pv, pvc)
		if !past(policy.PhaseScalingDown) {
			objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg-" + ord, Labels: map[string]string{"app": "pg"},
				OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "pg", UID: sts.UID, Controller: ptr.To(true)}}}})
		}
	}
	csi := interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
		if vs, ok := obj.(*snapv1.VolumeSnapshot); ok {
			vs.Status = &snapv1.VolumeSnapshotStatus{CreationTime: &metav1.Time{Time: time.Now()}, ReadyToUse: ptr.To(false)}
			if fail != "" {
				vs.Status = &snapv1.VolumeSnapshotStatus{Error: &snapv1.VolumeSnapshotError{Message: &fail}}
			}
		}
		return c.Create(ctx, obj, opts...)
	}}
	return fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithInterceptorFuncs(csi).Build()
}

func controllerFor(cl client.WithWatch) *Controller {
	return &Controller{Client: cl, Reader: cl, Cache: cl, Clock: clocktesting.NewFakePassiveClock(time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)),
		Engine: &snapshotter.Engine{Client: cl, Reader: cl, Snapshots: cl, Changes: snapshotter.NewTracker()}}
}

// settle plays the rest of the cluster once: the snapshot controller readies
// every snapshot, the StatefulSet controller deletes the pods of a StatefulSet
// at 0 replicas, and the PVC protection controller lets deleted PVCs go once
// no pod is left.
func settle(t *testing.T, cl client.WithWatch) {
	t.Helper()
	ctx := context.Background()
	var snaps snapv1.VolumeSnapshotList
	if err := cl.List(ctx, &snaps); err != nil {
		t.Fatal(err)
	}
	for i := range snaps.Items {
		vs := &snaps.Items[i]
		if vs.Status != nil && vs.Status.Error == nil && !*vs.Status.ReadyToUse {
			vs.Status.ReadyToUse = ptr.To(true)
			if err := cl.Update(ctx, vs); err != nil {
				t.Fatal(err)
			}
		}
	}
	sts := state(t, cl)
	var pods corev1.PodList
	if err := cl.List(ctx, &pods, client.InNamespace("db")); err != nil {
		t.Fatal(err)
	}
	if *sts.sts.Spec.Replicas == 0 {
		for i := range pods.Items {
			if err := cl.Delete(ctx, &pods.Items[i]); err != nil {
				t.Fatal(err)
			}
		}
		pods.Items = nil
	}
	var pvcs corev1.PersistentVolumeClaimList
	if err := cl.List(ctx, &pvcs, client.InNamespace("db")); err != nil {
		t.Fatal(err)
	}
	for i := range pvcs.Items {
		if pvc := &pvcs.Items[i]; pvc.DeletionTimestamp != nil && len(pods.Items) == 0 {
			pvc.Finalizers = nil
			if err := cl.Update(ctx, pvc); err != nil {
				t.Fatal(err)
			}
		}
	}
}

type observed struct {
	sts *appsv1.StatefulSet
	st  policy.RollbackState
}

func state(t *testing.T, cl client.Client) observed {
	t.Helper()
	var sts appsv1.StatefulSet
	if err := cl.Get(context.Background(), key, &sts); err != nil {
		t.Fatal(err)
	}
	st, _ := policy.ParseRollbackState(sts.Annotations)
	return observed{&sts, st}
}

// drive reconciles until the rollback ends, letting the cluster settle while a
// step waits; it returns each reconcile's phase and message.
func drive(t *testing.T, c *Controller, cl client.WithWatch) []string {
	t.Helper()
	var seen []string
	for range 12 {
		res, err := c.Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
		if err != nil {
			t.Fatalf("after %v: %v", seen, err)
		}
		st := state(t, cl).st
		seen = append(seen, string(st.Phase)+": "+st.Message)
		if !st.InProgress() {
			return seen
		}
		if res.RequeueAfter <= 0 {
			t.Fatalf("a reconcile left the rollback at %s without waiting: %v", st.Phase, seen)
		}
		settle(t, cl)
	}
	t.Fatalf("the rollback did not end: %v", seen)
	return nil
}

// rolledBack checks what a user checks after a rollback: the status, the
// trigger gone, the template and replicas of the set, every PVC a copy of its
// snapshot, every replaced volume kept, and one safety set.
func rolledBack(t *testing.T, cl client.Client) {
	t.Helper()
	ctx := context.Background()
	got := state(t, cl)
	if got.st.Phase != policy.PhaseSucceeded || got.st.SafetySet == "" {
		t.Fatalf("status = %+v", got.st)
	}
	if _, asked := got.sts.Annotations[policy.RollbackTo]; asked {
		t.Error("the trigger is still there")
	}
	if img := got.sts.Spec.Template.Spec.Containers[0].Image; img != "pg:16" || *got.sts.Spec.Replicas != 3 {
		t.Errorf("spec = %s × %d, want pg:16 × 3", img, *got.sts.Spec.Replicas)
	}
	for i := range 3 {
		var pvc corev1.PersistentVolumeClaim
		if err := cl.Get(ctx, types.NamespacedName{Namespace: "db", Name: fmt.Sprintf("data-pg-%d", i)}, &pvc); err != nil {
			t.Fatal(err)
		}
		if pvc.Spec.DataSource == nil || pvc.Spec.DataSource.Name != fmt.Sprintf("data-pg-%d-abc", i) || pvc.Annotations[snapshotter.AnnotationRollbackID] != "id-1" && pvc.Annotations[snapshotter.AnnotationRollbackID] != got.st.ID {
			t.Errorf("PVC %s: dataSource %+v, annotations %v", pvc.Name, pvc.Spec.DataSource, pvc.Annotations)
		}
		var pv corev1.PersistentVolume
		if err := cl.Get(ctx, types.NamespacedName{Name: fmt.Sprintf("pv-old-%d", i)}, &pv); err != nil {
			t.Fatal(err)
		}
		if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
			t.Errorf("old PV %s: reclaim %s, want Retain", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy)
		}
	}
	if got.st.SafetySet == "pg-safe" {
		return // taken before the resume, in the world
	}
	var snaps snapv1.VolumeSnapshotList
	if err := cl.List(ctx, &snaps, client.MatchingLabels{snapshotter.LabelSet: got.st.SafetySet}); err != nil {
		t.Fatal(err)
	}
	sets := map[string]bool{}
	var all snapv1.VolumeSnapshotList
	_ = cl.List(ctx, &all)
	for _, vs := range all.Items {
		if vs.Annotations[snapshotter.AnnotationReason] == string(policy.ReasonRollback) {
			sets[vs.Labels[snapshotter.LabelSet]] = true
		}
	}
	if len(snaps.Items) != 3 || len(sets) != 1 {
		t.Errorf("safety set %s has %d snapshots, and there are safety sets %v; want one of 3", got.st.SafetySet, len(snaps.Items), sets)
	}
}

// TestRollbackWaitsAcrossReconciles drives a rollback from its trigger: each
// wait ends the reconcile with what it waits for in the status, and nothing is
// changed until the safety set is ready.
func TestRollbackWaitsAcrossReconciles(t *testing.T) {
	cl := world(t, "", "")
	c := controllerFor(cl)
	ctx := context.Background()
	reconcileOnce := func() (reconcile.Result, observed) {
		t.Helper()
		res, err := c.Reconcile(ctx, reconcile.Request{NamespacedName: key})
		if err != nil {
			t.Fatal(err)
		}
		return res, state(t, cl)
	}

	res, got := reconcileOnce()
	if got.st.Phase != policy.PhaseSafetySet || !strings.HasPrefix(got.st.Message, "waiting for safety set "+got.st.SafetySet+" to be ready (0 of 3 snapshots)") || res.RequeueAfter != DefaultRecheck {
		t.Fatalf("after the first reconcile: %+v, %+v; want waiting for the safety set", got.st, res)
	}
	var pv corev1.PersistentVolume
	if err := cl.Get(ctx, types.NamespacedName{Name: "pv-old-0"}, &pv); err != nil || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || *got.sts.Spec.Replicas != 3 {
		t.Fatalf("before the safety set is ready: PV %v %s, %d replicas; want nothing changed", err, pv.Spec.PersistentVolumeReclaimPolicy, *got.sts.Spec.Replicas)
	}
	if res, again := reconcileOnce(); again.st.String() != got.st.String() || res.RequeueAfter == 0 {
		t.Fatalf("a reconcile with nothing new moved the rollback: %+v -> %+v", got.st, again.st)
	}

	settle(t, cl) // the safety set is ready; the pods are still running
	res, got = reconcileOnce()
	if got.st.Phase != policy.PhaseScalingDown || got.st.Message != "scaling to 0 and waiting for the pods to go: pg-0, pg-1, pg-2" || *got.sts.Spec.Replicas != 0 || res.RequeueAfter == 0 {
		t.Fatalf("with the safety set ready: %+v, %d replicas; want scaled to 0, waiting for the pods", got.st, *got.sts.Spec.Replicas)
	}
	if err := cl.Get(ctx, types.NamespacedName{Name: "pv-old-0"}, &pv); err != nil || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
		t.Fatalf("PV pv-old-0 after step 3: %v %s, want Retain", err, pv.Spec.PersistentVolumeReclaimPolicy)
	}

	// The pods go; the PVCs, deleted, are held until protection lets go.
	var pods corev1.PodList
	_ = cl.List(ctx, &pods)
	for i := range pods.Items {
		_ = cl.Delete(ctx, &pods.Items[i])
	}
	_, got = reconcileOnce()
	if got.st.Phase != policy.PhaseReplacing || !strings.HasSuffix(got.st.Message, "waiting for data-pg-0, data-pg-1, data-pg-2 to go (a pod still using a PVC holds it)") {
		t.Fatalf("with the pods gone: %+v; want waiting for the PVCs to go", got.st)
	}
	settle(t, cl)
	_, _ = reconcileOnce()
	rolledBack(t, cl)
}

// TestRollbackResumesFromEveryStepToTheSameResult restarts an interrupted
// rollback at each of its steps, with a new controller, and checks that every
// one ends the same way.
func TestRollbackResumesFromEveryStepToTheSameResult(t *testing.T) {
	for _, phase := range order {
		t.Run(string(phase), func(t *testing.T) {
			cl := world(t, phase, "")
			seen := drive(t, controllerFor(cl), cl)
			if seen[0] == "" || strings.HasPrefix(seen[0], string(policy.PhaseFailed)) {
				t.Fatalf("phases: %v", seen)
			}
			rolledBack(t, cl)
		})
	}
	// Interrupted while the safety set was cut and not ready: the next
	// controller waits for that set and takes no second one.
	t.Run("SafetySetCut", func(t *testing.T) {
		cl := world(t, "", "")
		if _, err := controllerFor(cl).Reconcile(context.Background(), reconcile.Request{NamespacedName: key}); err != nil {
			t.Fatal(err)
		}
		if st := state(t, cl).st; st.Phase != policy.PhaseSafetySet {
			t.Fatalf("after one reconcile: %+v", st)
		}
		drive(t, controllerFor(cl), cl)
		rolledBack(t, cl)
	})
}

// TestAFailedSafetySetEndsTheRollbackWithNothingChanged: the CSI driver fails
// the safety set; the rollback is refused with the driver's message, before
// any volume or replica is touched.
func TestAFailedSafetySetEndsTheRollbackWithNothingChanged(t *testing.T) {
	cl := world(t, "", "no space left on the pool")
	seen := drive(t, controllerFor(cl), cl)
	got := state(t, cl)
	if got.st.Phase != policy.PhaseFailed || !strings.Contains(got.st.Message, "the safety set of the current data failed") ||
		!strings.Contains(got.st.Message, "no space left on the pool") || !strings.HasSuffix(got.st.Message, "nothing was changed") {
		t.Fatalf("status = %+v (phases %v)", got.st, seen)
	}
	if _, asked := got.sts.Annotations[policy.RollbackTo]; asked || *got.sts.Spec.Replicas != 3 || got.sts.Spec.Template.Spec.Containers[0].Image != "pg:17" {
		t.Errorf("after a refused rollback: trigger %v, %d replicas, image %s; want the trigger gone and the spec as it was",
			asked, *got.sts.Spec.Replicas, got.sts.Spec.Template.Spec.Containers[0].Image)
	}
	var pv corev1.PersistentVolume
	if err := cl.Get(context.Background(), types.NamespacedName{Name: "pv-old-0"}, &pv); err != nil || pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		t.Errorf("PV pv-old-0: %v %s, want untouched", err, pv.Spec.PersistentVolumeReclaimPolicy)
	}
}

// TestRollbackNeverDeletesAClaimWhoseVolumeWouldGo: a PVC bound to a volume
// that is not Retain (changed by someone since) is not deleted; the step fails
// and is retried.
func TestRollbackNeverDeletesAClaimWhoseVolumeWouldGo(t *testing.T) {
	cl := world(t, policy.PhaseReplacing, "")
	pv := &corev1.PersistentVolume{}
	if err := cl.Get(context.Background(), types.NamespacedName{Name: "pv-old-1"}, pv); err != nil {
		t.Fatal(err)
	}
	pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	if err := cl.Update(context.Background(), pv); err != nil {
		t.Fatal(err)
	}
	_, err := controllerFor(cl).Reconcile(context.Background(), reconcile.Request{NamespacedName: key})
	if err == nil {
		t.Fatal("the rollback went on with a volume that would be deleted")
	}
	var pvc corev1.PersistentVolumeClaim
	if err := cl.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: "data-pg-1"}, &pvc); err != nil || pvc.Spec.VolumeName != "pv-old-1" || pvc.DeletionTimestamp != nil {
		t.Fatalf("PVC data-pg-1: %v, volume %q, deleting %v; want it kept on pv-old-1", err, pvc.Spec.VolumeName, pvc.DeletionTimestamp)
	}
	if st := state(t, cl).st; st.Phase != policy.PhaseReplacing || !strings.Contains(st.Message, "PV pv-old-1 of PVC data-pg-1 is not set to Retain") {
		t.Fatalf("status = %+v; want still ReplacingClaims, with the reason", st)
	}
}

// TestWatchEventsWakeOnlyRollbacks: a deleted pod, a deleted PVC and a safety
// set's snapshot wake the StatefulSet they belong to only while it is in a
// rollback.
func TestWatchEventsWakeOnlyRollbacks(t *testing.T) {
	ctx := context.Background()
	pod := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg-0",
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "pg", UID: "uid-1", Controller: ptr.To(true)}}}}
	pvc := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data-pg-0"}}
	safety := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "data-pg-0-safe",
		Annotations: map[string]string{snapshotter.AnnotationReason: "rollback", snapshotter.AnnotationStatefulSetName: "pg"}}}
	upgrade := snap("0")
	for _, tc := range []struct {
		phase policy.RollbackPhase
		want  int
	}{{policy.PhaseScalingDown, 1}, {policy.PhaseSucceeded, 0}, {"", 0}} {
		cl := world(t, tc.phase, "")
		c := controllerFor(cl)
		got := []int{len(c.podOwner(ctx, pod)), len(c.claimOwners(ctx, pvc)), len(c.safetySetOwner(ctx, safety)), len(c.safetySetOwner(ctx, &upgrade))}
		if want := []int{tc.want, tc.want, tc.want, 0}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("in phase %q: requests for a pod, a PVC, a safety snapshot, an upgrade's snapshot = %v, want %v", tc.phase, got, want)
		}
	}
}

// TestEachSnapshotsContentIsReadOnceAcrossWakes: a rollback woken again and
// again checks its set each time, but reads each snapshot's content from the
// API server once.
func TestEachSnapshotsContentIsReadOnceAcrossWakes(t *testing.T) {
	cl := world(t, "", "")
	reads := 0
	c := controllerFor(cl)
	c.Reader = interceptor.NewClient(cl, interceptor.Funcs{Get: func(ctx context.Context, w client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
		if _, ok := obj.(*snapv1.VolumeSnapshotContent); ok {
			reads++
		}
		return w.Get(ctx, key, obj, opts...)
	}})
	if seen := drive(t, c, cl); len(seen) < 3 {
		t.Fatalf("the rollback ended in %d reconciles (%v); want it woken several times", len(seen), seen)
	}
	rolledBack(t, cl)
	if reads != 3 {
		t.Fatalf("VolumeSnapshotContents read %d times, want once for each of the 3 snapshots", reads)
	}
}
