package snapshotter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// Quiescer is the seam for application hooks: it brings every affected pod of a
// plan to a consistent state before the snapshots are cut.
type Quiescer interface {
	// Quiesce runs the pre-hooks of plan. The returned Thaw runs the
	// post-hooks; the engine calls it exactly once, whatever happened, with a
	// context of its own (never the request's, which may already be over).
	Quiesce(ctx context.Context, plan *Plan) (Quiesced, error)
}

// Quiesced is what Quiesce did.
type Quiesced struct {
	// Thaw runs the post-hooks of every pod whose pre-hook was attempted (nil
	// when there is nothing to thaw); its error is a *ThawError when some failed.
	Thaw func(context.Context) error
	// Pods are the pods whose pre-hook was attempted: those to thaw.
	Pods []string
	// NotRunning names each affected pod that got no hooks because it is not
	// running, and why: its volumes are snapshotted as they are (nothing is
	// writing to them), so that a broken StatefulSet can always be fixed.
	NotRunning []string
	// Warnings are what the hooks' annotations say that was not taken as
	// written (a bad Velero timeout), each naming the pod and annotation.
	Warnings []string
}

// ThawError is a thaw whose post-hooks failed in some pods: those may still
// be quiesced, and the Thawer retries them.
type ThawError struct {
	// Pods are the pods whose post-hook failed, by name.
	Pods []string
	// Err says how each failed.
	Err error
}

func (e *ThawError) Error() string { return e.Err.Error() }

func (e *ThawError) Unwrap() error { return e.Err }

// HookOutcome is what the hooks of one Take did.
type HookOutcome struct {
	// Quiesced are the pods whose pre-hook was attempted.
	Quiesced []string
	// NotRunning are the pods that got no hooks, each with why.
	NotRunning []string
	// Warnings are Quiesced.Warnings.
	Warnings []string
	// ThawFailed, when set, names the pods whose post-hook failed.
	ThawFailed *ThawError
	// Frozen is how long the application was quiesced: from the start of the
	// pre-hooks to the end of the post-hooks (zero when no pod had a hook).
	// The snapshots are created and cut inside it; it is what a user's
	// writes wait for.
	Frozen time.Duration
	// PreHooks and PostHooks are how long each phase took, its pods' hooks
	// run in parallel: the slowest pod's, with snapgate's reads of the pods.
	PreHooks, PostHooks time.Duration
}

// Thawed are the quiesced pods whose post-hook did not fail.
func (h HookOutcome) Thawed() []string {
	var out []string
	for _, p := range h.Quiesced {
		if h.ThawFailed == nil || !slices.Contains(h.ThawFailed.Pods, p) {
			out = append(out, p)
		}
	}
	return out
}

// NoHooks quiesces nothing: crash-consistent snapshots.
type NoHooks struct{}

// Quiesce implements Quiescer.
func (NoHooks) Quiesce(context.Context, *Plan) (Quiesced, error) { return Quiesced{}, nil }

// Engine takes snapshot sets.
type Engine struct {
	// Client creates VolumeSnapshots.
	Client client.Client
	// Reader reads PVCs, PVs and classes from the API server, uncached.
	Reader client.Reader
	// Snapshots reads VolumeSnapshots from the cache that Changes watches.
	Snapshots client.Reader
	// Changes wakes waiters on every VolumeSnapshot event.
	Changes *Tracker
	// Hooks quiesce the application; nil means NoHooks.
	Hooks Quiescer
	// Events records what was taken on the StatefulSet.
	Events events.EventRecorder
	// ThawTimeout bounds the post-hooks, which run on a context of their own.
	ThawTimeout time.Duration
	// Metrics, when set, counts sets and their cut and ready times.
	Metrics *Metrics
	// Clock times the sets and dates them; the real clock when nil.
	Clock clock.PassiveClock
	// Backend makes, lists and deletes the sets' snapshots; PerPVC on Client,
	// Reader and Snapshots when nil.
	Backend Backend
}

func (e *Engine) clock() clock.PassiveClock {
	if e.Clock != nil {
		return e.Clock
	}
	return clock.RealClock{}
}

// Progress is how far a set has got.
type Progress struct {
	// Total is the number of snapshots in the set; Found of them exist.
	Total, Found int
	// Cut have a creation time; Ready are readyToUse.
	Cut, Ready int
	// Failure is the first snapshot error the CSI driver reported.
	Failure *SnapshotError
	// Hooks is what this Take's hooks did; empty when the set existed.
	Hooks HookOutcome
	// Created, CutAt and ReadyAt are how long after Take started the set was
	// created, cut and ready, for the log (zero when not reached, or when the set
	// existed before).
	Created, CutAt, ReadyAt time.Duration
}

// Done reports whether the set has got as far as w.
func (p Progress) Done(w policy.Wait) bool {
	if w == policy.WaitCut {
		return p.Cut == p.Total
	}
	return p.Ready == p.Total
}

// QuiesceError is a set that was not taken because its pre-hooks failed or were
// not allowed to run. The post-hooks of every pod that was quiesced have run.
type QuiesceError struct{ Err error }

func (e *QuiesceError) Error() string { return e.Err.Error() }

func (e *QuiesceError) Unwrap() error { return e.Err }

// SnapshotError is a snapshot the CSI driver failed to take.
type SnapshotError struct {
	Snapshot, PVC, Message string
}

func (e *SnapshotError) Error() string {
	return fmt.Sprintf("snapshot %s of PVC %s failed: %s", e.Snapshot, e.PVC, e.Message)
}

// Plan is PlanSet with a shortcut for a set that exists already. The API server
// re-runs admission whenever its update loses a conflict (the StatefulSet
// controller writes status all through a rollout), and a user re-runs a command
// that was denied for time: when every snapshot of the set is in the cache, the
// plan reads nothing from the API server.
func (e *Engine) Plan(ctx context.Context, c Change, p policy.Policy) (*Plan, error) {
	plan := skeleton(c, p)
	if len(plan.Snapshots) > 0 {
		if prog, err := e.progress(ctx, plan); err == nil && prog.Found == prog.Total {
			return plan, nil
		}
	}
	return PlanSet(ctx, e.Reader, c, p)
}

// Take brings a planned set into being: if the set does not exist yet, it
// quiesces the pods, creates every snapshot in parallel, waits until all are cut,
// thaws, and then waits until all are ready (or only cut, as the plan says).
// A set that exists already (a retried request) is only waited for. When ctx
// ends first, Take returns the progress so far and ctx's error; the snapshots go
// on, and taking the same plan again picks up where this left off.
func (e *Engine) Take(ctx context.Context, plan *Plan) (Progress, error) {
	start := e.clock().Now()
	prog, err := e.progress(ctx, plan)
	if err != nil {
		return prog, err
	}
	var created, cutAt time.Duration
	if prog.Found < prog.Total && !plan.checked {
		// The set was whole when planned and has lost a snapshot since: read the
		// PVCs and classes that creating it again needs. The caller's plan is left
		// as it is; the names are the same.
		if plan, err = PlanSet(ctx, e.Reader, plan.Change, plan.Policy); err != nil {
			return prog, err
		}
	}
	var hooked HookOutcome
	if prog.Found < prog.Total {
		plan.takenAt = start
		if prog, err = e.cut(ctx, plan, start, &created); err != nil {
			return prog, err
		}
		cutAt, hooked = e.clock().Since(start), prog.Hooks
	}
	prog, err = e.WaitSet(ctx, plan, plan.WaitFor)
	prog.Created, prog.CutAt, prog.Hooks = created, cutAt, hooked
	if err == nil && cutAt > 0 {
		prog.ReadyAt = e.clock().Since(start)
	}
	return prog, err
}

// cut quiesces, creates the set and waits until it is cut, then thaws. Once
// every snapshot is cut the set is good: a post-hook that fails then is
// reported in prog.Hooks.ThawFailed (and retried by the Thawer), not an error.
func (e *Engine) cut(ctx context.Context, plan *Plan, start time.Time, created *time.Duration) (prog Progress, err error) {
	hooks := e.Hooks
	if hooks == nil {
		hooks = NoHooks{}
	}
	frozeAt := e.clock().Now()
	q, qerr := hooks.Quiesce(ctx, plan)
	outcome := HookOutcome{Quiesced: q.Pods, NotRunning: q.NotRunning, Warnings: q.Warnings, PreHooks: e.clock().Since(frozeAt)}
	defer func() {
		if q.Thaw != nil {
			tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.thawTimeout())
			defer cancel()
			thawAt := e.clock().Now()
			terr := q.Thaw(tctx)
			outcome.PostHooks = e.clock().Since(thawAt)
			if terr != nil {
				var te *ThawError
				if !errors.As(terr, &te) {
					te = &ThawError{Pods: q.Pods, Err: terr}
				}
				outcome.ThawFailed = te
			}
			outcome.Frozen = e.clock().Since(frozeAt)
			e.Metrics.observeHooks(outcome)
		}
		prog.Hooks = outcome
	}()
	if qerr != nil {
		return Progress{Total: len(plan.Snapshots)}, &QuiesceError{Err: qerr}
	}
	if err := e.CreateSet(ctx, plan); err != nil {
		return Progress{Total: len(plan.Snapshots)}, err
	}
	*created = e.clock().Since(start)
	return e.WaitSet(ctx, plan, policy.WaitCut)
}

func (e *Engine) thawTimeout() time.Duration {
	if e.ThawTimeout > 0 {
		return e.ThawTimeout
	}
	return policy.MaxHookTimeout
}

// CreateSet creates every snapshot of the plan through the backend. A
// snapshot that exists already as part of this set is fine; one of that name
// that belongs to something else is an error, never overwritten.
func (e *Engine) CreateSet(ctx context.Context, plan *Plan) error {
	return e.backend().Create(ctx, plan)
}

// PresetHooksOnly is the engine and policy for a set no user asked for at that
// moment (a rollback's safety set, a schedule's run): only the preset's hooks
// run. Hooks written in annotations, snapgate's or Velero's on the pods, run
// with the rights of whoever asked, which a controller cannot prove; with no
// preset the engine runs no hooks at all.
func (e *Engine) PresetHooksOnly(p policy.Policy) (*Engine, policy.Policy) {
	p.Hooks = policy.Hooks{Preset: p.Hooks.Preset, Container: p.Hooks.Container, Timeout: p.Hooks.Timeout, OnError: p.Hooks.OnError}
	engine := *e
	if p.Hooks.Preset == "" {
		engine.Hooks = nil
	}
	return &engine, p
}

// SnapshotBackend is the Backend the engine makes and reads sets through.
func (e *Engine) SnapshotBackend() Backend { return e.backend() }

// backend is the engine's Backend: Groups on its own clients when none is set.
func (e *Engine) backend() Backend {
	if e.Backend != nil {
		return e.Backend
	}
	return Groups{PerPVC: PerPVC{Client: e.Client, Reader: e.Reader, Snapshots: e.Snapshots}}
}

// volumeSnapshot is the object for one planned snapshot, with the labels that
// find it and the annotations that restore from it.
func (plan *Plan) volumeSnapshot(s *PlannedSnapshot) (*snapv1.VolumeSnapshot, error) {
	old := plan.Change.Old
	tmpl, err := json.Marshal(old.Spec.Template)
	if err != nil {
		return nil, fmt.Errorf("record pod template: %w", err)
	}
	pvcSpec, err := json.Marshal(s.pvcSpec)
	if err != nil {
		return nil, fmt.Errorf("record PVC spec: %w", err)
	}
	ann := map[string]string{
		AnnotationReason:          string(plan.Reason),
		AnnotationReplicasBefore:  strconv.Itoa(int(Replicas(old))),
		AnnotationReplicasAfter:   strconv.Itoa(int(plan.Change.NewReplicas)),
		AnnotationRevision:        old.Status.UpdateRevision,
		AnnotationPVCSpec:         string(pvcSpec),
		AnnotationStatefulSetUID:  string(old.UID),
		AnnotationStatefulSetName: old.Name,
		AnnotationRequestedBy:     plan.Change.UserInfo.Username,
		AnnotationGeneration:      strconv.FormatInt(old.Generation, 10),
		AnnotationTakenAt:         plan.takenAt.UTC().Format(time.RFC3339Nano),
	}
	if s.PVC == plan.Snapshots[0].PVC {
		ann[AnnotationPodTemplate] = string(tmpl)
	} else {
		ann[AnnotationPodTemplateDigest] = TemplateDigest(string(tmpl))
	}
	if plan.Change.RecordPending {
		ann[AnnotationRecordPending] = "true"
	}
	if plan.WaitFor == policy.WaitCut {
		ann[AnnotationWaitFor] = string(policy.WaitCut)
	}
	if len(plan.LeftOut) > 0 {
		pvcs := make([]string, len(plan.LeftOut))
		for i, l := range plan.LeftOut {
			pvcs[i] = l.PVC
		}
		ann[AnnotationLeftOut] = strings.Join(pvcs, ",")
	}
	pvc, class := s.PVC, s.Class
	return &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{
			Name:      s.Name,
			Namespace: plan.StatefulSet.Namespace,
			Labels: map[string]string{
				LabelSet:         plan.Set,
				LabelStatefulSet: LabelValue(plan.StatefulSet.Name),
				LabelOrdinal:     strconv.Itoa(int(s.Ordinal)),
				LabelClaim:       LabelValue(s.Claim),
				LabelManagedBy:   ManagedBy,
			},
			Annotations: ann,
		},
		Spec: snapv1.VolumeSnapshotSpec{
			Source:                  snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc},
			VolumeSnapshotClassName: &class,
		},
	}, nil
}

// WaitSet blocks until the set has got as far as w, a snapshot fails, or ctx
// ends. It wakes on VolumeSnapshot watch events only.
func (e *Engine) WaitSet(ctx context.Context, plan *Plan, w policy.Wait) (Progress, error) {
	for {
		changed := e.Changes.Changed()
		prog, err := e.progress(ctx, plan)
		if err != nil {
			return prog, err
		}
		if prog.Failure != nil {
			return prog, prog.Failure
		}
		if prog.Done(w) {
			return prog, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return prog, ctx.Err()
		}
	}
}

// SetProgress is how far a planned set has got, read from the cache without
// waiting: for a caller that waits across reconciles, woken by watch events.
func (e *Engine) SetProgress(ctx context.Context, plan *Plan) (Progress, error) {
	return e.progress(ctx, plan)
}

// progress counts the set's snapshots from the cache, matched by PVC: a
// group snapshot's members are named by the snapshot controller, so the plan
// learns their names here.
func (e *Engine) progress(ctx context.Context, plan *Plan) (Progress, error) {
	prog := Progress{Total: len(plan.Snapshots)}
	// Only read, so not copied: a set being taken is counted on every one of
	// its snapshots' updates.
	items, err := e.backend().List(ctx, plan.StatefulSet.Namespace, client.MatchingLabels{LabelSet: plan.Set}, client.UnsafeDisableDeepCopy)
	if err != nil {
		return prog, fmt.Errorf("list snapshots of set %s: %w", plan.Set, err)
	}
	want := make(map[string]*PlannedSnapshot, len(plan.Snapshots))
	for i := range plan.Snapshots {
		want[plan.Snapshots[i].PVC] = &plan.Snapshots[i]
	}
	for i := range items {
		vs := &items[i]
		src := vs.Spec.Source.PersistentVolumeClaimName
		if src == nil || want[*src] == nil {
			continue
		}
		pvc := *src
		// Only a group's member is named otherwise than planned: a plan that
		// has its names already is only read, so that callers may watch its
		// progress while it is taken.
		if want[pvc].Name != vs.Name {
			want[pvc].Name = vs.Name
		}
		prog.Found++
		st := vs.Status
		if st == nil {
			continue
		}
		if msg, failed := Failure(vs); failed && prog.Failure == nil {
			prog.Failure = &SnapshotError{Snapshot: vs.Name, PVC: pvc, Message: msg}
		}
		if st.CreationTime != nil {
			prog.Cut++
		}
		if st.ReadyToUse != nil && *st.ReadyToUse {
			prog.Ready++
		}
	}
	return prog, nil
}

// Failure is the error the CSI driver reported for a snapshot, if it has one
// that ends the snapshot (not a transient one). A snapshot that is readyToUse
// has not failed, whatever its status.error says: it was cut and restores, and
// the error is the snapshot controller's about a later sync of it (its class
// deleted, say). Calling it failed would have the Pruner delete a good set.
func Failure(vs *snapv1.VolumeSnapshot) (string, bool) {
	st := vs.Status
	if st == nil || st.ReadyToUse != nil && *st.ReadyToUse {
		return "", false
	}
	if st.Error != nil && st.Error.Message != nil && !transient(*st.Error.Message) {
		return *st.Error.Message, true
	}
	return "", false
}

// transient tells a snapshot error that the snapshot controller clears by itself
// on its next sync: it lost an optimistic-concurrency race with another
// controller (two snapshots of one PVC adding finalizers at once). Every other
// error, the CSI driver's above all, ends the wait at once.
func transient(msg string) bool {
	return strings.Contains(msg, "the object has been modified")
}

// RecordTaken records on the StatefulSet that a set was taken for a change.
func (e *Engine) RecordTaken(ctx context.Context, plan *Plan, prog Progress, elapsed time.Duration) {
	e.Metrics.setTaken(string(plan.Reason), prog)
	log.FromContext(ctx).Info("Snapshot set taken", "statefulSet", plan.StatefulSet, "set", plan.Set,
		"reason", plan.Reason, "snapshots", prog.Total, "elapsed", elapsed,
		"created", prog.Created, "cut", prog.CutAt, "ready", prog.ReadyAt,
		"frozen", prog.Hooks.Frozen, "preHooks", prog.Hooks.PreHooks, "postHooks", prog.Hooks.PostHooks)
	if tf := prog.Hooks.ThawFailed; tf != nil && e.Events != nil {
		e.Events.Eventf(plan.Change.Old, nil, corev1.EventTypeWarning, "PostHookFailed", "Thaw",
			"Set %s is good, but the post-hook failed in %s, which may still be quiesced; snapgate retries it: %v", plan.Set, strings.Join(tf.Pods, ", "), tf.Err)
	}
	if e.Events != nil && len(plan.Snapshots) > 0 {
		// Related to the set's first snapshot: the event library folds events
		// of one object, reason and related object into one series.
		e.Events.Eventf(plan.Change.Old, SnapshotRef(plan.StatefulSet.Namespace, plan.Snapshots[0].Name), corev1.EventTypeNormal, "SnapshotSetTaken", "Snapshot",
			"Took snapshot set %s (%s, %s) %s%s", plan.Set, Count(prog.Total, "snapshot"), plan.WaitFor, takenFor(plan), lacks(plan, prog))
	}
}

// takenFor says, for the Event, what a set was taken for.
func takenFor(plan *Plan) string {
	switch plan.Reason {
	case policy.ReasonManual:
		return "on demand by " + plan.Change.UserInfo.Username
	case policy.ReasonSchedule:
		return "on its schedule (" + policy.Schedule + ")"
	}
	return fmt.Sprintf("before a %s change by %s", plan.Reason, plan.Change.UserInfo.Username)
}

// lacks says, for the Event, what a set left out and which pods got no hooks.
func lacks(plan *Plan, prog Progress) string {
	var out string
	for _, l := range plan.LeftOut {
		out += "; left out " + l.String()
	}
	for _, p := range prog.Hooks.NotRunning {
		out += "; no hooks in " + p + ", snapshotted as it is"
	}
	return out
}

// RecordSkipped records that a change went through without snapshots, by whom
// and why.
func (e *Engine) RecordSkipped(ctx context.Context, c Change, reason string) {
	log.FromContext(ctx).Info("Snapshot skipped", "statefulSet", types.NamespacedName{Namespace: c.Old.Namespace, Name: c.Old.Name},
		"change", c.Reason, "user", c.UserInfo.Username, "skipReason", reason)
	if e.Events != nil {
		e.Events.Eventf(c.Old, nil, corev1.EventTypeWarning, "SnapshotSkipped", "Skip",
			"%s change by %s went through without snapshots: %s", c.Reason, c.UserInfo.Username, reason)
	}
}

// SnapshotsByPVC maps each PVC of the plan to its VolumeSnapshot, for the record.
func (plan *Plan) SnapshotsByPVC() map[string]string {
	m := make(map[string]string, len(plan.Snapshots))
	for _, s := range plan.Snapshots {
		m[s.PVC] = s.Name
	}
	return m
}

// ClearSkip removes a consumed snapgate.io/skip from a StatefulSet whose change
// could not remove it in its own patch (a scale through the scale subresource).
func (e *Engine) ClearSkip(ctx context.Context, sts *appsv1.StatefulSet) error {
	patch := []byte(fmt.Sprintf(`{"metadata":{"annotations":{%q:null}}}`, policy.Skip))
	if err := e.Client.Patch(ctx, sts.DeepCopy(), client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("remove %s from statefulset %s/%s: %w", policy.Skip, sts.Namespace, sts.Name, err)
	}
	return nil
}
