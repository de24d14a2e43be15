package rollback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/client-go/util/retry"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Annotations snapgate writes during a rollback.
const (
	// AnnotationRestoredFrom is on a PVC a rollback made: the snapshot it holds.
	AnnotationRestoredFrom = policy.Prefix + "restored-from"
	// AnnotationRollbackID is on a PVC a rollback made, and on a PV whose data
	// a rollback replaced: which rollback (RollbackState.ID).
	AnnotationRollbackID = policy.Prefix + "rollback-id"
	// AnnotationReplacedClaim is on a PV whose data a rollback replaced: the
	// PVC it was bound to, so an operator can find the old data.
	AnnotationReplacedClaim = policy.Prefix + "replaced-claim"
)

// DefaultStepTimeout bounds each wait of a rollback (a safety set, the pods to
// go, a PVC to go); the rollback is retried after it, never given up.
const DefaultStepTimeout = 10 * time.Minute

// Controller rolls StatefulSets back to a snapshot set when asked by
// snapgate.io/rollback-to. It records each step in snapgate.io/rollback-status
// before it acts, and every step is idempotent, so a controller that crashes
// or loses its lease mid-way is resumed by the next one to the same result.
type Controller struct {
	// Client writes, and reads VolumeSnapshots from the cache.
	Client client.Client
	// Reader reads StatefulSets, PVCs, PVs and VolumeSnapshotContents from the
	// API server, uncached.
	Reader client.Reader
	// Clientset watches pods and PVCs while waiting for them to go.
	Clientset kubernetes.Interface
	// Engine takes the safety set.
	Engine *snapshotter.Engine
	// Events records each rollback's start and outcome on its StatefulSet.
	Events events.EventRecorder
	// Metrics, when set, counts rollbacks.
	Metrics *Metrics
	// StepTimeout bounds each wait; DefaultStepTimeout when zero.
	StepTimeout time.Duration
	// Now is the clock (injected to make testing simpler); time.Now when nil.
	Now func() time.Time
}

var _ reconcile.Reconciler = (*Controller)(nil)

// SetupWithManager registers the controller on StatefulSets that ask for a
// rollback or are in one. It watches their metadata only: the annotations are
// all it needs to wake, and a cluster may hold thousands of StatefulSets.
func (c *Controller) SetupWithManager(mgr ctrl.Manager) error {
	asked := predicate.NewPredicateFuncs(func(o client.Object) bool {
		st, _ := policy.ParseRollbackState(o.GetAnnotations())
		_, trigger := o.GetAnnotations()[policy.RollbackTo]
		return trigger || st.InProgress()
	})
	return ctrl.NewControllerManagedBy(mgr).
		Named("rollback").
		For(&appsv1.StatefulSet{}, builder.OnlyMetadata, builder.WithPredicates(asked)).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Complete(c)
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Controller) stepTimeout() time.Duration {
	if c.StepTimeout > 0 {
		return c.StepTimeout
	}
	return DefaultStepTimeout
}

// Reconcile starts or resumes the rollback of one StatefulSet.
func (c *Controller) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	var sts appsv1.StatefulSet
	if err := c.Reader.Get(ctx, req.NamespacedName, &sts); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	st, _ := policy.ParseRollbackState(sts.Annotations)
	request := strings.TrimSpace(sts.Annotations[policy.RollbackTo])
	if !st.InProgress() {
		if request == "" {
			return reconcile.Result{}, nil
		}
		// The trigger is removed when a rollback ends, so one that is present
		// asks for a new rollback.
		st = policy.RollbackState{Request: request, Phase: policy.PhaseChecking, ID: c.now().UTC().Format(time.RFC3339Nano),
			Message: "checking set " + request}
		if err := c.setState(ctx, &sts, st, nil); err != nil {
			return reconcile.Result{}, err
		}
		c.event(&sts, corev1.EventTypeNormal, "RollbackStarted", "Rolling back to snapshot set %s", request)
	}
	ctx = log.IntoContext(ctx, log.FromContext(ctx).WithValues("rollback", st.ID, "request", st.Request))
	err := c.run(ctx, &sts, &st)
	var refusal *Refusal
	switch {
	case err == nil:
		return reconcile.Result{}, nil
	case errors.As(err, &refusal) && (st.Phase == policy.PhaseChecking || st.Phase == policy.PhaseSafetySet):
		// Nothing has been changed yet: end the rollback with the reason.
		return reconcile.Result{}, c.fail(ctx, &sts, st, refusal.Error())
	default:
		// Data has been touched, or the cause may pass: retry, never give up
		// half-way. The message says what stands in the way.
		log.FromContext(ctx).Error(err, "Rollback step failed; retrying", "phase", st.Phase)
		st.Message = fmt.Sprintf("retrying %s: %v", st.Phase, err)
		if serr := c.setState(ctx, &sts, st, nil); serr != nil {
			err = errors.Join(err, serr)
		}
		return reconcile.Result{}, err
	}
}

// run carries the rollback from its recorded phase to its end.
func (c *Controller) run(ctx context.Context, sts *appsv1.StatefulSet, st *policy.RollbackState) error {
	set := st.Set
	if set == "" {
		sets, err := snapshotter.ListSets(ctx, c.Client, sts.Namespace, sts.Name)
		if err != nil {
			return err
		}
		if set, err = ResolveSet(st.Request, sets, sts.Name); err != nil {
			return err
		}
	}
	// Checked again on every resume: a snapshot may have gone since.
	restore, err := c.check(ctx, sts, set)
	if err != nil {
		return err
	}
	for {
		var next policy.RollbackPhase
		var extra map[string]any
		switch st.Phase {
		case policy.PhaseChecking:
			st.Set = restore.Set
			next = policy.PhaseSafetySet
			st.Message = "taking a safety set of the current data"
			if restore.OtherUID {
				c.event(sts, corev1.EventTypeNormal, "RollbackAcrossRecreate", "Set %s was taken of an earlier StatefulSet named %s (deleted and created again); restoring it into this one", restore.Set, sts.Name)
			}
		case policy.PhaseSafetySet:
			if st.SafetySet, err = c.safetySet(ctx, sts, st); err != nil {
				return err
			}
			next, st.Message = policy.PhaseRetaining, "setting the replaced volumes to reclaim policy Retain"
		case policy.PhaseRetaining:
			if st.RetainedVolumes, err = c.retain(ctx, sts, restore, st.ID); err != nil {
				return err
			}
			next, st.Message = policy.PhaseScalingDown, "scaling to 0 and waiting for the pods to go"
			if rp := sts.Spec.PersistentVolumeClaimRetentionPolicy; rp != nil && rp.WhenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
				st.WhenScaledWas = string(rp.WhenScaled)
			}
			// The scale rides on the phase change, so the guard knows it as the
			// controller's own step.
			extra = scaleToZero()
		case policy.PhaseScalingDown:
			if snapshotter.Replicas(sts) != 0 || whenScaled(sts) != appsv1.RetainPersistentVolumeClaimRetentionPolicyType {
				st.Message = "scaling to 0 again"
				if err := c.setState(ctx, sts, *st, scaleToZero()); err != nil {
					return err
				}
			}
			if err := c.waitPodsGone(ctx, sts); err != nil {
				return err
			}
			next, st.Message = policy.PhaseReplacing, fmt.Sprintf("replacing %s with copies of set %s", snapshotter.Count(len(restore.Claims), "PVC"), restore.Set)
		case policy.PhaseReplacing:
			if err := c.replaceClaims(ctx, sts, restore, st.ID); err != nil {
				return err
			}
			next, st.Message = policy.PhaseRestoring, fmt.Sprintf("restoring the pod template and %d replicas", restore.Replicas)
		case policy.PhaseRestoring:
			return c.restoreSpec(ctx, sts, st, restore)
		default:
			return fmt.Errorf("unknown rollback phase %q", st.Phase)
		}
		st.Phase = next
		if err := c.setState(ctx, sts, *st, extra); err != nil {
			return err
		}
	}
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

// check reads a set's snapshots and checks them against the StatefulSet.
func (c *Controller) check(ctx context.Context, sts *appsv1.StatefulSet, set string) (*Restore, error) {
	var list snapv1.VolumeSnapshotList
	if err := c.Client.List(ctx, &list, client.InNamespace(sts.Namespace),
		client.MatchingLabels{snapshotter.LabelSet: set, snapshotter.LabelManagedBy: snapshotter.ManagedBy}); err != nil {
		return nil, fmt.Errorf("list snapshots of set %s: %w", set, err)
	}
	return CheckSet(sts, set, list.Items, func(vs *snapv1.VolumeSnapshot) error { return c.bound(ctx, vs) })
}

// bound checks that a snapshot's content points back at it, so a restore reads
// the data this snapshot was cut from and not another's.
func (c *Controller) bound(ctx context.Context, vs *snapv1.VolumeSnapshot) error {
	name := vs.Status.BoundVolumeSnapshotContentName
	if name == nil || *name == "" {
		return errors.New("it is bound to no VolumeSnapshotContent")
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
	return nil
}

// safetySet takes a set of the data the rollback is about to replace. Its hooks
// are the preset's only, and their failure does not stop the rollback: the
// application may be what is broken. Annotation hooks are left out: they run
// with the rights of whoever asked, which a controller cannot prove.
func (c *Controller) safetySet(ctx context.Context, sts *appsv1.StatefulSet, st *policy.RollbackState) (string, error) {
	if snapshotter.Replicas(sts) == 0 || len(sts.Spec.VolumeClaimTemplates) == 0 {
		return "", nil
	}
	p, errs := policy.Parse(sts)
	if len(errs) > 0 {
		// The user asked for this rollback; a policy that cannot be read
		// leaves the safety set crash-consistent rather than stopping it.
		c.event(sts, corev1.EventTypeWarning, "PolicyUnreadable",
			"The safety set is taken without hooks: the snapgate annotations cannot be read: %s", errs.ToAggregate())
		p = policy.Policy{}
	}
	p.WaitFor = policy.WaitReady
	p.Hooks = policy.Hooks{Preset: p.Hooks.Preset, Container: p.Hooks.Container, Timeout: p.Hooks.Timeout, OnError: "Continue"}
	engine := *c.Engine
	if p.Hooks.Preset == "" {
		engine.Hooks = nil
	}
	change := snapshotter.Change{
		Reason: policy.ReasonRollback, Old: sts, NewReplicas: snapshotter.Replicas(sts), Nonce: st.ID,
		UserInfo: authenticationv1.UserInfo{Username: "snapgate rollback to " + st.Set},
	}
	ctx, cancel := context.WithTimeout(ctx, c.stepTimeout())
	defer cancel()
	start := c.now()
	plan, err := engine.Plan(ctx, change, p)
	var pe *snapshotter.PlanError
	if errors.As(err, &pe) {
		return "", refusef("cannot take a safety set of the current data: %s", pe)
	}
	if err != nil {
		return "", fmt.Errorf("plan safety set: %w", err)
	}
	prog, err := engine.Take(ctx, plan)
	var se *snapshotter.SnapshotError
	if errors.As(err, &se) {
		return "", refusef("the safety set of the current data failed: %s", se)
	}
	if err != nil {
		return "", fmt.Errorf("take safety set %s: %w", plan.Set, err)
	}
	engine.RecordTaken(ctx, plan, prog, c.now().Sub(start))
	return plan.Set, nil
}

// retain sets the reclaim policy of every volume the rollback replaces to
// Retain, before anything can delete its PVC: the data being replaced is kept.
func (c *Controller) retain(ctx context.Context, sts *appsv1.StatefulSet, r *Restore, id string) ([]string, error) {
	var out []string
	for _, cr := range r.Claims {
		var pvc corev1.PersistentVolumeClaim
		err := c.Reader.Get(ctx, types.NamespacedName{Namespace: sts.Namespace, Name: cr.PVC}, &pvc)
		if apierrors.IsNotFound(err) {
			continue // removed by a scale-down: nothing to keep
		}
		if err != nil {
			return nil, fmt.Errorf("get PVC %s: %w", cr.PVC, err)
		}
		if restoredBy(&pvc, cr, id) || pvc.Spec.VolumeName == "" {
			continue
		}
		patch := map[string]any{
			"metadata": map[string]any{"annotations": map[string]any{
				AnnotationRollbackID: id, AnnotationReplacedClaim: sts.Namespace + "/" + cr.PVC,
			}},
			"spec": map[string]any{"persistentVolumeReclaimPolicy": corev1.PersistentVolumeReclaimRetain},
		}
		pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: pvc.Spec.VolumeName}}
		if err := c.Client.Patch(ctx, pv, mergePatch(patch)); err != nil {
			return nil, fmt.Errorf("retain PV %s of PVC %s: %w", pv.Name, cr.PVC, err)
		}
		out = append(out, pv.Name)
	}
	return out, nil
}

func restoredBy(pvc *corev1.PersistentVolumeClaim, cr ClaimRestore, id string) bool {
	return pvc.Annotations[AnnotationRestoredFrom] == cr.Snapshot && pvc.Annotations[AnnotationRollbackID] == id
}

// waitPodsGone waits, on a watch, until the StatefulSet owns no pod.
func (c *Controller) waitPodsGone(ctx context.Context, sts *appsv1.StatefulSet) error {
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return fmt.Errorf("selector of statefulset %s: %w", sts.Name, err)
	}
	pods := c.Clientset.CoreV1().Pods(sts.Namespace)
	lw := &toolscache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = sel.String()
			return pods.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel.String()
			return pods.Watch(ctx, o)
		},
	}
	owned := func(o any) bool {
		pod, ok := o.(*corev1.Pod)
		ref := metav1.GetControllerOf(pod)
		return ok && ref != nil && ref.UID == sts.UID
	}
	if err := c.waitGone(ctx, toolscache.ToListWatcherWithWatchListSemantics(lw, c.Clientset), &corev1.Pod{}, owned); err != nil {
		return fmt.Errorf("wait for the pods of statefulset %s to go: %w", sts.Name, err)
	}
	return nil
}

// waitGone blocks until no object of the watch matches.
func (c *Controller) waitGone(ctx context.Context, lw toolscache.ListerWatcher, obj runtime.Object, match func(any) bool) error {
	ctx, cancel := context.WithTimeout(ctx, c.stepTimeout())
	defer cancel()
	var store toolscache.Store
	gone := func() bool {
		for _, o := range store.List() {
			if match(o) {
				return false
			}
		}
		return true
	}
	_, err := watchtools.UntilWithSync(ctx, lw, obj,
		func(s toolscache.Store) (bool, error) { store = s; return gone(), nil },
		func(watch.Event) (bool, error) { return gone(), nil })
	return err
}

// replaceClaims replaces every PVC of the set, in parallel, with one of the same
// name restored from its snapshot. A PVC this rollback made already is kept.
func (c *Controller) replaceClaims(ctx context.Context, sts *appsv1.StatefulSet, r *Restore, id string) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(8)
	for _, cr := range r.Claims {
		g.Go(func() error { return c.replaceClaim(gctx, sts, cr, id) })
	}
	return g.Wait()
}

func (c *Controller) replaceClaim(ctx context.Context, sts *appsv1.StatefulSet, cr ClaimRestore, id string) error {
	var pvc corev1.PersistentVolumeClaim
	err := c.Reader.Get(ctx, types.NamespacedName{Namespace: sts.Namespace, Name: cr.PVC}, &pvc)
	switch {
	case err == nil && restoredBy(&pvc, cr, id):
		return nil
	case err == nil:
		if pvc.Spec.VolumeName != "" {
			// Never delete a claim whose volume would go with it.
			var pv corev1.PersistentVolume
			if err := c.Reader.Get(ctx, types.NamespacedName{Name: pvc.Spec.VolumeName}, &pv); err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("get PV %s of PVC %s: %w", pvc.Spec.VolumeName, cr.PVC, err)
			} else if err == nil && pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain {
				return fmt.Errorf("PV %s of PVC %s is not set to Retain; not deleting the PVC", pv.Name, cr.PVC)
			}
		}
		if pvc.DeletionTimestamp == nil {
			uid := pvc.UID
			if err := c.Client.Delete(ctx, &pvc, client.Preconditions{UID: &uid}); client.IgnoreNotFound(err) != nil {
				return fmt.Errorf("delete PVC %s: %w", cr.PVC, err)
			}
		}
		pvcs := c.Clientset.CoreV1().PersistentVolumeClaims(sts.Namespace)
		byName := "metadata.name=" + cr.PVC
		lw := &toolscache.ListWatch{
			ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
				o.FieldSelector = byName
				return pvcs.List(ctx, o)
			},
			WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
				o.FieldSelector = byName
				return pvcs.Watch(ctx, o)
			},
		}
		named := func(o any) bool { p, ok := o.(*corev1.PersistentVolumeClaim); return ok && p.Name == cr.PVC }
		if err := c.waitGone(ctx, toolscache.ToListWatcherWithWatchListSemantics(lw, c.Clientset), &corev1.PersistentVolumeClaim{}, named); err != nil {
			return fmt.Errorf("wait for PVC %s to go (a pod still using it holds it): %w", cr.PVC, err)
		}
	case !apierrors.IsNotFound(err):
		return fmt.Errorf("get PVC %s: %w", cr.PVC, err)
	}
	restored := RestoredClaim(sts, cr, id)
	if err := c.Client.Create(ctx, restored); err != nil {
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("PVC %s was created again by someone else before snapgate could restore it; it will be replaced on retry", cr.PVC)
		}
		return fmt.Errorf("create PVC %s from snapshot %s: %w", cr.PVC, cr.Snapshot, err)
	}
	log.FromContext(ctx).Info("PVC restored from snapshot", "pvc", cr.PVC, "snapshot", cr.Snapshot)
	return nil
}

// restoreSpec brings back the recorded pod template and replica count, removes
// the trigger and records success, in one update.
func (c *Controller) restoreSpec(ctx context.Context, sts *appsv1.StatefulSet, st *policy.RollbackState, r *Restore) error {
	st.Phase = policy.PhaseSucceeded
	st.Message = fmt.Sprintf("restored %s from set %s, the pod template and %s", snapshotter.Count(len(r.Claims), "PVC"), r.Set, snapshotter.Count(int(r.Replicas), "replica"))
	if st.SafetySet != "" {
		st.Message += fmt.Sprintf("; the data replaced is in safety set %s", st.SafetySet)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		if err := c.Reader.Get(ctx, client.ObjectKeyFromObject(sts), sts); err != nil {
			return err
		}
		sts.Spec.Template = *r.Template.DeepCopy()
		replicas := r.Replicas
		sts.Spec.Replicas = &replicas
		if st.WhenScaledWas != "" && sts.Spec.PersistentVolumeClaimRetentionPolicy != nil {
			sts.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = appsv1.PersistentVolumeClaimRetentionPolicyType(st.WhenScaledWas)
		}
		delete(sts.Annotations, policy.RollbackTo)
		sts.Annotations[policy.RollbackStatus] = st.String()
		return c.Client.Update(ctx, sts)
	})
	if err != nil {
		return fmt.Errorf("restore pod template and replicas of statefulset %s: %w", sts.Name, err)
	}
	c.Metrics.observe(policy.PhaseSucceeded)
	c.event(sts, corev1.EventTypeNormal, "RolledBack", "Rolled back to snapshot set %s: %s", r.Set, st.Message)
	log.FromContext(ctx).Info("Rolled back", "statefulSet", client.ObjectKeyFromObject(sts), "set", r.Set, "safetySet", st.SafetySet)
	return nil
}

// fail ends a rollback that changed nothing, and removes its trigger.
func (c *Controller) fail(ctx context.Context, sts *appsv1.StatefulSet, st policy.RollbackState, why string) error {
	st.Phase, st.Message = policy.PhaseFailed, why+"; nothing was changed"
	ann := map[string]any{policy.RollbackStatus: st.String(), policy.RollbackTo: nil}
	if err := c.Client.Patch(ctx, sts, mergePatch(map[string]any{"metadata": map[string]any{"annotations": ann}})); err != nil {
		return fmt.Errorf("record failed rollback of statefulset %s: %w", sts.Name, err)
	}
	c.Metrics.observe(policy.PhaseFailed)
	c.event(sts, corev1.EventTypeWarning, "RollbackRefused", "Rollback to %s refused: %s", st.Request, st.Message)
	log.FromContext(ctx).Info("Rollback refused", "statefulSet", client.ObjectKeyFromObject(sts), "reason", why)
	return nil
}

// setState records the rollback's state, with extra fields of the same patch.
func (c *Controller) setState(ctx context.Context, sts *appsv1.StatefulSet, st policy.RollbackState, extra map[string]any) error {
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]any{policy.RollbackStatus: st.String()}}}
	for k, v := range extra {
		patch[k] = v
	}
	if err := c.Client.Patch(ctx, sts, mergePatch(patch)); err != nil {
		return fmt.Errorf("record rollback status of statefulset %s: %w", sts.Name, err)
	}
	return nil
}

func (c *Controller) event(sts *appsv1.StatefulSet, kind, reason, format string, args ...any) {
	if c.Events != nil {
		c.Events.Eventf(sts, nil, kind, reason, "Rollback", format, args...)
	}
}

func mergePatch(v map[string]any) client.Patch {
	return client.RawPatch(types.MergePatchType, mustJSON(v))
}

// mustJSON marshals a patch built of maps, strings and numbers, which always
// marshals.
func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}
