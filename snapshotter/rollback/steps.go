package rollback

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// checked is step 1: the set was resolved and checked (by advance, as on every
// reconcile); it is recorded, and the rollback goes on to the safety set.
func (c *Controller) checked(ctx context.Context, r *rollback) (ctrl.Result, error) {
	captures, err := CapturingVolumes(ctx, c.Reader, c.restoredClaims(r))
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(captures) > 0 {
		return ctrl.Result{}, refusef("the restored PVCs would not hold set %s's data: %s, then roll back again", r.restore.Set, captures)
	}
	if r.restore.OtherUID {
		c.event(r.sts, corev1.EventTypeNormal, "RollbackAcrossRecreate", "Set %s was taken of an earlier StatefulSet named %s (deleted and created again); restoring it into this one", r.restore.Set, r.sts.Name)
	}
	r.st.Set = r.restore.Set
	return c.next(ctx, r, policy.PhaseSafetySet, "taking a safety set of the current data", nil)
}

// takeSafetySet is step 2: a set of the data the rollback is about to
// replace. The first reconcile quiesces, creates and waits until the set is
// cut, in one go, because the pods stay quiesced until then (bounded by
// StepTimeout); the wait until it is ready spans reconciles. Its name follows
// from the rollback's ID, so a resumed rollback finds the set it started.
func (c *Controller) takeSafetySet(ctx context.Context, r *rollback) (ctrl.Result, error) {
	if snapshotter.Replicas(r.sts) == 0 || len(r.sts.Spec.VolumeClaimTemplates) == 0 {
		r.st.SafetySet = ""
		return c.retainStep(ctx, r)
	}
	engine, plan, err := c.planSafetySet(ctx, r)
	if err != nil {
		return ctrl.Result{}, err
	}
	prog, err := engine.SetProgress(ctx, plan)
	if err != nil {
		return ctrl.Result{}, err
	}
	if prog.Found < prog.Total {
		// Recorded first, so that the status names the set while it is taken.
		if r.st.SafetySet != plan.Set {
			r.st.SafetySet = plan.Set
			if err := c.note(ctx, r, "taking safety set "+plan.Set+" of the current data"); err != nil {
				return ctrl.Result{}, err
			}
		}
		if prog, err = c.cutSafetySet(ctx, engine, plan); err != nil {
			return ctrl.Result{}, err
		}
	}
	if prog.Failure != nil {
		return ctrl.Result{}, refusef("the safety set of the current data failed: %s", prog.Failure)
	}
	r.st.SafetySet = plan.Set
	if !prog.Done(policy.WaitReady) {
		return c.wait(ctx, r, fmt.Sprintf("waiting for safety set %s to be ready (%d of %s)", plan.Set, prog.Ready, snapshotter.Count(prog.Total, "snapshot")))
	}
	return c.retainStep(ctx, r)
}

// planSafetySet plans the safety set. Its hooks are the preset's only
// (Engine.PresetHooksOnly), and their failure does not stop the rollback: the
// application may be what is broken.
func (c *Controller) planSafetySet(ctx context.Context, r *rollback) (*snapshotter.Engine, *snapshotter.Plan, error) {
	p, errs := policy.Parse(r.sts)
	if len(errs) > 0 {
		// The user asked for this rollback; a policy that cannot be read
		// leaves the safety set crash-consistent rather than stopping it.
		c.event(r.sts, corev1.EventTypeWarning, "PolicyUnreadable",
			"The safety set is taken without hooks: the snapgate annotations cannot be read: %s", errs.ToAggregate())
		p = policy.Policy{}
	}
	p.WaitFor = policy.WaitReady
	engine, p := c.Engine.PresetHooksOnly(p)
	p.Hooks.OnError = "Continue"
	change := snapshotter.Change{
		Reason: policy.ReasonRollback, Old: r.sts, NewReplicas: snapshotter.Replicas(r.sts), Nonce: r.st.ID,
		UserInfo: authenticationv1.UserInfo{Username: "snapgate rollback to " + r.st.Set},
	}
	plan, err := engine.Plan(ctx, change, p)
	var pe *snapshotter.PlanError
	if errors.As(err, &pe) {
		return nil, nil, refusef("cannot take a safety set of the current data: %s", pe)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("plan safety set: %w", err)
	}
	return engine, plan, nil
}

// cutSafetySet takes the planned set as far as cut, and records it taken.
func (c *Controller) cutSafetySet(ctx context.Context, engine *snapshotter.Engine, plan *snapshotter.Plan) (snapshotter.Progress, error) {
	cut := *plan
	cut.WaitFor = policy.WaitCut
	ctx, cancel := context.WithTimeout(ctx, c.stepTimeout())
	defer cancel()
	start := c.now()
	prog, err := engine.Take(ctx, &cut)
	var se *snapshotter.SnapshotError
	if errors.As(err, &se) {
		return prog, refusef("the safety set of the current data failed: %s", se)
	}
	if err != nil {
		return prog, fmt.Errorf("take safety set %s: %w", plan.Set, err)
	}
	elapsed := c.now().Sub(start)
	// Read again: a set the driver readies as it cuts needs no second reconcile.
	now, err := engine.SetProgress(ctx, plan)
	if err != nil {
		return prog, err
	}
	// The record says how far the set got: ready, or cut with the rest to come.
	prog.Ready = now.Ready
	if now.Done(policy.WaitReady) {
		engine.RecordTaken(ctx, plan, prog, elapsed)
	} else {
		prog.ReadyAt = 0
		engine.RecordTaken(ctx, &cut, prog, elapsed)
	}
	return now, nil
}

// retainStep moves from the safety set on to step 3.
func (c *Controller) retainStep(ctx context.Context, r *rollback) (ctrl.Result, error) {
	return c.next(ctx, r, policy.PhaseRetaining, "setting the replaced volumes to reclaim policy Retain", nil)
}

// retainVolumes is step 3: the reclaim policy of every volume the rollback
// replaces is set to Retain, before anything can delete its PVC: the data
// being replaced is kept. The scale to 0 rides on the move to step 4, so the
// guard knows it as the controller's own.
func (c *Controller) retainVolumes(ctx context.Context, r *rollback) (ctrl.Result, error) {
	var retained []string
	for _, cr := range r.restore.Claims {
		var pvc corev1.PersistentVolumeClaim
		err := c.Reader.Get(ctx, types.NamespacedName{Namespace: r.sts.Namespace, Name: cr.PVC}, &pvc)
		if apierrors.IsNotFound(err) {
			continue // removed by a scale-down: nothing to keep
		}
		if err != nil {
			return ctrl.Result{}, fmt.Errorf("get PVC %s: %w", cr.PVC, err)
		}
		if restoredBy(&pvc, cr, r.st.ID) || pvc.Spec.VolumeName == "" {
			continue
		}
		patch := map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{
				snapshotter.AnnotationRollbackID: r.st.ID, snapshotter.AnnotationReplacedClaim: r.sts.Namespace + "/" + cr.PVC,
			}},
			"spec": map[string]any{"persistentVolumeReclaimPolicy": corev1.PersistentVolumeReclaimRetain},
		}
		pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pvc.Spec.VolumeName}}
		if err := c.Client.Patch(ctx, pv, mergePatch(patch)); err != nil {
			return ctrl.Result{}, fmt.Errorf("retain PV %s of PVC %s: %w", pv.Name, cr.PVC, err)
		}
		retained = append(retained, pv.Name)
	}
	r.st.RetainedVolumes = retained
	if rp := r.sts.Spec.PersistentVolumeClaimRetentionPolicy; rp != nil && rp.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		r.st.WhenScaledWas = string(rp.WhenScaled)
	}
	return c.next(ctx, r, policy.PhaseScalingDown, "scaling to 0 and waiting for the pods to go", scaleToZero())
}

// scaleDown is step 4: the StatefulSet is at 0, keeping its PVCs, and none of
// its pods is left. Deleted pods wake it.
func (c *Controller) scaleDown(ctx context.Context, r *rollback) (ctrl.Result, error) {
	if snapshotter.Replicas(r.sts) != 0 || whenScaled(r.sts) != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
		r.st.Message = "scaling to 0 again"
		if err := c.setState(ctx, r.sts, r.st, scaleToZero()); err != nil {
			return ctrl.Result{}, err
		}
	}
	left, err := c.podsLeft(ctx, r.sts)
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(left) > 0 {
		return c.wait(ctx, r, "scaling to 0 and waiting for the pods to go: "+strings.Join(left, ", "))
	}
	return c.next(ctx, r, policy.PhaseReplacing, fmt.Sprintf("replacing %s with copies of set %s", snapshotter.Count(len(r.restore.Claims), "PVC"), r.restore.Set), nil)
}

// scaleToZero is the patch that stops every pod and keeps every PVC: under
// whenScaled: Delete a scale to 0 would delete the PVCs the rollback does not
// restore. Both change in one write, so the StatefulSet controller never sees
// the scale without the Retain.
func scaleToZero() map[string]any {
	return map[string]any{"spec": map[string]any{
		"replicas":                             0,
		"persistentVolumeClaimRetentionPolicy": map[string]any{"whenScaled": appsv1.RetainPersistentVolumeClaimRetentionPolicyType},
	}}
}

func whenScaled(sts *appsv1.StatefulSet) appsv1.PersistentVolumeClaimRetentionPolicyType {
	if rp := sts.Spec.PersistentVolumeClaimRetentionPolicy; rp != nil && rp.WhenScaled != "" {
		return rp.WhenScaled
	}
	return appsv1.RetainPersistentVolumeClaimRetentionPolicyType
}

// podsLeft names the pods the StatefulSet still owns, read from the API server
// as metadata.
func (c *Controller) podsLeft(ctx context.Context, sts *appsv1.StatefulSet) ([]string, error) {
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of statefulset %s: %w", sts.Name, err)
	}
	pods := PodMetadataList()
	if err := c.Reader.List(ctx, pods, client.InNamespace(sts.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("list the pods of statefulset %s: %w", sts.Name, err)
	}
	var left []string
	for _, p := range pods.Items {
		if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == sts.UID {
			left = append(left, p.Name)
		}
	}
	sort.Strings(left)
	return left, nil
}

// replaceClaims is step 5: every PVC of the set is replaced, in parallel, by
// one of the same name restored from its snapshot. A PVC is deleted in one
// reconcile and created in a later one, once it is gone (its deletion wakes
// this step); a PVC this rollback made already is kept.
func (c *Controller) replaceClaims(ctx context.Context, r *rollback) (ctrl.Result, error) {
	// Checked in step 1 too; a PV may have become Available since.
	captures, err := CapturingVolumes(ctx, c.Reader, c.restoredClaims(r))
	if err != nil {
		return ctrl.Result{}, err
	}
	if len(captures) > 0 {
		return ctrl.Result{}, fmt.Errorf("no PVC is created while it would not hold set %s's data: %s, and the rollback goes on", r.restore.Set, captures)
	}
	var mu sync.Mutex
	var going []string
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, cr := range r.restore.Claims {
		g.Go(func() error {
			gone, err := c.replaceClaim(gctx, r.sts, cr, r.st.ID)
			if err == nil && !gone {
				mu.Lock()
				going = append(going, cr.PVC)
				mu.Unlock()
			}
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return ctrl.Result{}, err
	}
	if len(going) > 0 {
		sort.Strings(going)
		return c.wait(ctx, r, fmt.Sprintf("replacing %s with copies of set %s: waiting for %s to go (a pod still using a PVC holds it)",
			snapshotter.Count(len(r.restore.Claims), "PVC"), r.restore.Set, strings.Join(going, ", ")))
	}
	return c.next(ctx, r, policy.PhaseRestoring, fmt.Sprintf("restoring the pod template and %d replicas", r.restore.Replicas), nil)
}

// replaceClaim takes one PVC a step further: delete the old one, or create the
// restored one once the old is gone. It reports whether the restored PVC is in
// place.
func (c *Controller) replaceClaim(ctx context.Context, sts *appsv1.StatefulSet, cr ClaimRestore, id string) (bool, error) {
	var pvc corev1.PersistentVolumeClaim
	err := c.Reader.Get(ctx, types.NamespacedName{Namespace: sts.Namespace, Name: cr.PVC}, &pvc)
	switch {
	case err == nil && restoredBy(&pvc, cr, id):
		return true, nil
	case err == nil:
		return false, c.deleteClaim(ctx, &pvc)
	case !apierrors.IsNotFound(err):
		return false, fmt.Errorf("get PVC %s: %w", cr.PVC, err)
	}
	restored := RestoredClaim(sts, cr, id)
	if err := c.Client.Create(ctx, restored); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return false, fmt.Errorf("PVC %s was created again by someone else before snapgate could restore it; it will be replaced on retry", cr.PVC)
		}
		return false, fmt.Errorf("create PVC %s from snapshot %s: %w", cr.PVC, cr.Snapshot, err)
	}
	log.FromContext(ctx).Info("PVC restored from snapshot", "pvc", cr.PVC, "snapshot", cr.Snapshot)
	return true, nil
}

// deleteClaim deletes a PVC to be replaced, never one whose volume would go
// with it.
func (c *Controller) deleteClaim(ctx context.Context, pvc *corev1.PersistentVolumeClaim) error {
	if pvc.Spec.VolumeName != "" {
		var pv corev1.PersistentVolume
		if err := c.Reader.Get(ctx, types.NamespacedName{Name: pvc.Spec.VolumeName}, &pv); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("get PV %s of PVC %s: %w", pvc.Spec.VolumeName, pvc.Name, err)
		} else if err == nil && pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
			return fmt.Errorf("PV %s of PVC %s is not set to Retain; not deleting the PVC", pv.Name, pvc.Name)
		}
	}
	if pvc.DeletionTimestamp != nil {
		return nil
	}
	uid := pvc.UID
	if err := c.Client.Delete(ctx, pvc, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("delete PVC %s: %w", pvc.Name, err)
	}
	return nil
}

// restoredClaims are the PVCs the rollback creates, as it creates them.
func (c *Controller) restoredClaims(r *rollback) []*corev1.PersistentVolumeClaim {
	claims := make([]*corev1.PersistentVolumeClaim, len(r.restore.Claims))
	for i, cr := range r.restore.Claims {
		claims[i] = RestoredClaim(r.sts, cr, r.st.ID)
	}
	return claims
}

func restoredBy(pvc *corev1.PersistentVolumeClaim, cr ClaimRestore, id string) bool {
	return pvc.Annotations[snapshotter.AnnotationRestoredFrom] == cr.Snapshot && pvc.Annotations[snapshotter.AnnotationRollbackID] == id
}

// restoreSpec is step 6: the recorded pod template and replica count are
// brought back, the trigger removed and success recorded, in one update.
func (c *Controller) restoreSpec(ctx context.Context, r *rollback) (ctrl.Result, error) {
	st, sts, restore := r.st, r.sts, r.restore
	st.Phase = policy.PhaseSucceeded
	st.Message = fmt.Sprintf("restored %s from set %s, the pod template and %s", snapshotter.Count(len(restore.Claims), "PVC"), restore.Set, snapshotter.Count(int(restore.Replicas), "replica"))
	if st.SafetySet != "" {
		st.Message += fmt.Sprintf("; the data replaced is in safety set %s", st.SafetySet)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Reader.Get(ctx, client.ObjectKeyFromObject(sts), sts); err != nil {
			return err
		}
		sts.Spec.Template = *restore.Template.DeepCopy()
		replicas := restore.Replicas
		sts.Spec.Replicas = &replicas
		if st.WhenScaledWas != "" && sts.Spec.PersistentVolumeClaimRetentionPolicy != nil {
			sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = appsv1.PersistentVolumeClaimRetentionPolicyType(st.WhenScaledWas)
		}
		delete(sts.Annotations, policy.RollbackTo)
		sts.Annotations[policy.RollbackStatus] = st.String()
		return c.Client.Update(ctx, sts)
	})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("restore pod template and replicas of statefulset %s: %w", sts.Name, err)
	}
	r.st = st
	c.Metrics.observe(policy.PhaseSucceeded)
	c.event(sts, corev1.EventTypeNormal, "RolledBack", "Rolled back to snapshot set %s: %s", restore.Set, st.Message)
	log.FromContext(ctx).Info("Rolled back", "statefulSet", client.ObjectKeyFromObject(sts), "set", restore.Set, "safetySet", st.SafetySet)
	return ctrl.Result{}, nil
}

// check reads a set's snapshots and checks them against the StatefulSet.
func (c *Controller) check(ctx context.Context, sts *appsv1.StatefulSet, set string) (*Restore, error) {
	snaps, err := c.backend().List(ctx, sts.Namespace, client.MatchingLabels{snapshotter.LabelSet: set, snapshotter.LabelManagedBy: snapshotter.ManagedBy})
	if err != nil {
		return nil, fmt.Errorf("list snapshots of set %s: %w", set, err)
	}
	return CheckSet(sts, set, snaps, func(vs *snapv1.VolumeSnapshot) error { return c.bound(ctx, vs) })
}

// bound checks that a snapshot's content points back at it, so a restore reads
// the data this snapshot was cut from and not another's.
func (c *Controller) bound(ctx context.Context, vs *snapv1.VolumeSnapshot) error {
	name := vs.Status.BoundVolumeSnapshotContentName
	if name == nil || *name == "" {
		return errors.New("it is bound to no VolumeSnapshotContent")
	}
	if seen, ok := c.boundTo.Load(vs.UID); ok && seen == *name {
		return nil
	}
	var content snapv1.VolumeSnapshotContent
	if err := c.Reader.Get(ctx, types.NamespacedName{Name: *name}, &content); err != nil {
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("its VolumeSnapshotContent %s does not exist", *name)
		}
		return fmt.Errorf("get VolumeSnapshotContent %s: %w", *name, err)
	}
	ref := content.Spec.VolumeSnapshotRef
	if ref.Name != vs.Name || ref.Namespace != vs.Namespace || (ref.UID != "" && ref.UID != vs.UID) {
		return fmt.Errorf("its VolumeSnapshotContent %s is bound to %s/%s, not to it", *name, ref.Namespace, ref.Name)
	}
	if vs.UID != "" {
		c.boundTo.Store(vs.UID, *name)
	}
	return nil
}
