package rollback

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// DefaultStepTimeout bounds the one wait a step holds inside a reconcile: the
// safety set's hooks and cut, while its pods are quiesced. The step is retried
// after it, never given up.
const DefaultStepTimeout = 10 * time.Minute

// DefaultRecheck is how long a waiting step waits for a watch event before it
// looks again by itself: the events are the fast path, this the backstop.
const DefaultRecheck = 10 * time.Second

// Controller rolls StatefulSets back to a snapshot set when asked by
// snapgate.io/rollback-to. It records each step in snapgate.io/rollback-status
// before it acts, and every step is idempotent, so a controller that crashes
// or loses its lease mid-way is resumed by the next one to the same result.
// A step that waits (for a safety set to be ready, pods or PVCs to go) ends
// its reconcile and is woken by a watch event or a requeue: a slow rollback
// holds no worker.
type Controller struct {
	// Client writes, and reads VolumeSnapshots from the cache.
	Client client.Client
	// Reader reads StatefulSets, Pods, PVCs, PVs and VolumeSnapshotContents
	// from the API server, uncached: every decision is made on what is there.
	Reader client.Reader
	// Cache reads StatefulSet metadata, to tell which watch events concern a
	// rollback; the manager's cache when nil.
	Cache client.Reader
	// Engine takes the safety set.
	Engine *snapshotter.Engine
	// Backend reads the sets to restore; PerPVC on Client when nil.
	Backend snapshotter.Backend
	// Events records each rollback's start and outcome on its StatefulSet.
	Events events.EventRecorder
	// Metrics, when set, counts rollbacks.
	Metrics *Metrics
	// StepTimeout bounds the safety set's hooks and cut; DefaultStepTimeout
	// when zero.
	StepTimeout time.Duration
	// Recheck is the requeue of a waiting step; DefaultRecheck when zero.
	Recheck time.Duration
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock

	// boundTo holds, by snapshot UID, the VolumeSnapshotContent each snapshot
	// was found bound to: a binding does not change while the snapshot lives
	// (the snapshot controller's finalizer keeps the content), so a rollback
	// woken again and again reads each content from the API server once.
	boundTo sync.Map
}

var _ reconcile.Reconciler = (*Controller)(nil)

func (c *Controller) now() time.Time {
	if c.Clock != nil {
		return c.Clock.Now()
	}
	return time.Now()
}

func (c *Controller) backend() snapshotter.Backend {
	if c.Backend != nil {
		return c.Backend
	}
	return snapshotter.PerPVC{Client: c.Client, Reader: c.Reader, Snapshots: c.Client}
}

func (c *Controller) stepTimeout() time.Duration {
	if c.StepTimeout > 0 {
		return c.StepTimeout
	}
	return DefaultStepTimeout
}

func (c *Controller) recheck() time.Duration {
	if c.Recheck > 0 {
		return c.Recheck
	}
	return DefaultRecheck
}

// rollback is one reconcile's view of a rollback: the StatefulSet as read, its
// recorded state, and the set it restores, checked again on every reconcile.
type rollback struct {
	sts     *appsv1.StatefulSet
	st      policy.RollbackState
	restore *Restore
}

// step is one step of a rollback. It either records the next phase (and
// returns a zero Result), or waits (a Result with RequeueAfter, its reason in
// the status message), or fails.
type step func(*Controller, context.Context, *rollback) (ctrl.Result, error)

// steps are the rollback's steps by the phase they carry out, in order:
//
//  1. Checking: the set can restore this StatefulSet.
//  2. SafetySet: a set of the data about to be replaced is cut, then ready.
//  3. Retaining: every volume to be replaced is set to reclaim policy Retain.
//  4. ScalingDown: the StatefulSet is at 0 and its pods are gone.
//  5. Replacing: each PVC is deleted, gone, and created from its snapshot.
//  6. Restoring: the pod template and replicas are back; the rollback ends.
var steps = map[policy.RollbackPhase]step{
	policy.PhaseChecking:    (*Controller).checked,
	policy.PhaseSafetySet:   (*Controller).takeSafetySet,
	policy.PhaseRetaining:   (*Controller).retainVolumes,
	policy.PhaseScalingDown: (*Controller).scaleDown,
	policy.PhaseReplacing:   (*Controller).replaceClaims,
	policy.PhaseRestoring:   (*Controller).restoreSpec,
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
	r := &rollback{sts: &sts, st: st}
	res, err := c.advance(ctx, r)
	var refusal *Refusal
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &refusal) && (r.st.Phase == policy.PhaseChecking || r.st.Phase == policy.PhaseSafetySet):
		// Nothing has been changed yet: end the rollback with the reason.
		return reconcile.Result{}, c.fail(ctx, r.sts, r.st, refusal.Error())
	default:
		// Data has been touched, or the cause may pass: retry, never give up
		// half-way. The message says what stands in the way.
		log.FromContext(ctx).Error(err, "Rollback step failed; retrying", "phase", r.st.Phase)
		if serr := c.note(ctx, r, fmt.Sprintf("retrying %s: %v", r.st.Phase, err)); serr != nil {
			err = errors.Join(err, serr)
		}
		return reconcile.Result{}, err
	}
}

// advance runs the steps from the recorded phase until one waits, fails or
// ends the rollback.
func (c *Controller) advance(ctx context.Context, r *rollback) (ctrl.Result, error) {
	set := r.st.Set
	if set == "" {
		sets, err := snapshotter.ListSets(ctx, c.backend(), r.sts.Namespace, r.sts.Name)
		if err != nil {
			return ctrl.Result{}, err
		}
		if set, err = ResolveSet(r.st.Request, sets, r.sts.Name); err != nil {
			return ctrl.Result{}, err
		}
	}
	// Checked again on every reconcile: a snapshot may have gone since.
	restore, err := c.check(ctx, r.sts, set)
	if err != nil {
		return ctrl.Result{}, err
	}
	r.restore = restore
	for r.st.InProgress() {
		phase := r.st.Phase
		run, ok := steps[phase]
		if !ok {
			return ctrl.Result{}, fmt.Errorf("unknown rollback phase %q", phase)
		}
		res, err := run(c, ctx, r)
		if err != nil || !res.IsZero() {
			return res, err
		}
		if r.st.Phase == phase {
			return ctrl.Result{}, fmt.Errorf("rollback step %s neither ended nor moved on", phase)
		}
	}
	return ctrl.Result{}, nil
}

// next records that the rollback moves on to phase, with a message of what it
// does there and extra fields of the same patch.
func (c *Controller) next(ctx context.Context, r *rollback, phase policy.RollbackPhase, message string, extra map[string]any) (ctrl.Result, error) {
	st := r.st
	st.Phase, st.Message = phase, message
	if err := c.setState(ctx, r.sts, st, extra); err != nil {
		return ctrl.Result{}, err
	}
	r.st = st
	return ctrl.Result{}, nil
}

// wait ends the reconcile of a step that waits, with what it waits for in the
// status message; a watch event or the requeue brings it back.
func (c *Controller) wait(ctx context.Context, r *rollback, message string) (ctrl.Result, error) {
	if err := c.note(ctx, r, message); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: c.recheck()}, nil
}

// note records a new status message in the same phase. An unchanged message
// is not written again: the write would wake this controller for nothing.
func (c *Controller) note(ctx context.Context, r *rollback, message string) error {
	if r.st.Message == message {
		return nil
	}
	st := r.st
	st.Message = message
	if err := c.setState(ctx, r.sts, st, nil); err != nil {
		return err
	}
	r.st = st
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
