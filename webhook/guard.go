package webhook

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// DefaultBudget is how long a request may wait for its set. The API server ends a
// webhook call after at most 30 s; the rest is margin for the answer to get back.
const DefaultBudget = 25 * time.Second

// Taker takes snapshot sets; *snapshotter.Engine is one.
type Taker interface {
	Plan(ctx context.Context, c snapshotter.Change, p policy.Policy) (*snapshotter.Plan, error)
	Take(ctx context.Context, plan *snapshotter.Plan) (snapshotter.Progress, error)
	RecordTaken(ctx context.Context, plan *snapshotter.Plan, prog snapshotter.Progress, elapsed time.Duration)
	RecordSkipped(ctx context.Context, c snapshotter.Change, reason string)
	ClearSkip(ctx context.Context, sts *appsv1.StatefulSet) error
}

// Guard is the mutating admission handler for StatefulSet updates, deletes and
// scale-downs through the scale subresource.
type Guard struct {
	// Engine takes the sets.
	Engine Taker
	// Reader reads PVCs, classes, and a scaled StatefulSet and its namespace,
	// uncached.
	Reader client.Reader
	// Budget bounds the wait for a set; DefaultBudget when zero.
	Budget time.Duration
	// Metrics, when set, counts decisions.
	Metrics *Metrics
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock
}

var (
	_ admission.Handler = (*Guard)(nil)
	_ Taker             = (*snapshotter.Engine)(nil)
)

// Handle implements admission.Handler.
func (g *Guard) Handle(ctx context.Context, req admission.Request) admission.Response {
	start := g.now()
	resp, reason := g.handle(ctx, req)
	g.Metrics.observe(resp, reason, g.now().Sub(start))
	return resp
}

func (g *Guard) now() time.Time {
	if g.Clock != nil {
		return g.Clock.Now()
	}
	return time.Now()
}

func (g *Guard) budget() time.Duration {
	if g.Budget > 0 {
		return g.Budget
	}
	return DefaultBudget
}

// handle routes a request and returns the response and the kind of change, for
// the metrics.
func (g *Guard) handle(ctx context.Context, req admission.Request) (admission.Response, policy.Reason) {
	// Route on the resource: a scale request's kind is autoscaling/v1 Scale.
	if req.Resource.Group != appsv1.GroupName || req.Resource.Resource != "statefulsets" {
		return admission.Allowed(""), ""
	}
	switch {
	case req.SubResource == "scale" && req.Operation == admissionv1.Update:
		return g.scale(ctx, req)
	case req.SubResource != "":
		return admission.Allowed(""), ""
	case req.Operation == admissionv1.Update:
		return g.update(ctx, req)
	case req.Operation == admissionv1.Delete:
		return g.delete(ctx, req)
	}
	return admission.Allowed(""), ""
}

func (g *Guard) update(ctx context.Context, req admission.Request) (admission.Response, policy.Reason) {
	var old, updated appsv1.StatefulSet
	if err := decodeStatefulSet(req.OldObject, &old); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode old StatefulSet: %w", err)), ""
	}
	if err := decodeStatefulSet(req.Object, &updated); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode StatefulSet: %w", err)), ""
	}
	if rollbackStep(&old, &updated) {
		// The rollback controller's own step: it took its safety set already.
		return admission.Allowed(""), ""
	}
	if resp, busy := duringRollback(&old, &updated); busy {
		return resp, ""
	}
	reason := Classify(&old, &updated)
	if reason == "" {
		return admission.Allowed(""), ""
	}
	change := snapshotter.Change{
		Reason: reason, Old: &old, NewTemplate: &updated.Spec.Template,
		NewReplicas: snapshotter.Replicas(&updated), UserInfo: req.UserInfo,
	}
	// The skip comes with the change; everything else from the policy in force,
	// so that a change cannot switch its own guard off in passing.
	if skip := strings.TrimSpace(updated.Annotations[policy.Skip]); skip != "" {
		resp := g.skipped(ctx, req, change, skipReason(skip))
		// One-shot: the annotation goes with the change it let through.
		resp.Patches = append(resp.Patches, removeAnnotation(policy.Skip))
		return resp, reason
	}
	p, denied := policyInForce(change, &updated)
	if denied != nil {
		return *denied, reason
	}
	if !p.Triggers(reason) {
		if reason == policy.ReasonRestart {
			return admission.Allowed("").WithWarnings(fmt.Sprintf("snapgate: statefulset %s is restarted on the same pod template (only %s changed): no snapshot set is taken for a restart; "+
				"add restart to %s to snapshot restarts too", updated.Name, RestartedAt, policy.On)), reason
		}
		return admission.Allowed(""), ""
	}
	// The record rides on the change itself.
	record := func(plan *snapshotter.Plan) ([]jsonpatch.JsonPatchOperation, error) {
		return recordPatch(updated.Annotations, plan)
	}
	return g.guard(ctx, req, change, p, record), reason
}

func (g *Guard) delete(ctx context.Context, req admission.Request) (admission.Response, policy.Reason) {
	var old appsv1.StatefulSet
	if err := decodeStatefulSet(req.OldObject, &old); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode old StatefulSet: %w", err)), ""
	}
	change := snapshotter.Change{Reason: policy.ReasonDelete, Old: &old, UserInfo: req.UserInfo}
	if skip := strings.TrimSpace(old.Annotations[policy.Skip]); skip != "" {
		return g.skipped(ctx, req, change, skipReason(skip)), policy.ReasonDelete
	}
	p, denied := policyInForce(change, nil)
	if denied != nil {
		return *denied, policy.ReasonDelete
	}
	if !p.Triggers(policy.ReasonDelete) {
		return admission.Allowed(""), ""
	}
	// A namespace being deleted takes its PVCs and any snapshot with it, and
	// admits no new objects: denying would only hang the namespace's deletion.
	var ns corev1.Namespace
	if err := g.Reader.Get(ctx, types.NamespacedName{Name: old.Namespace}, &ns); err == nil && ns.DeletionTimestamp != nil {
		return g.skipped(ctx, req, change, "namespace "+old.Namespace+" is being deleted, with its PVCs and snapshots"), policy.ReasonDelete
	}
	// A delete cannot be patched: the set is found by its labels.
	return g.guard(ctx, req, change, p, nil), policy.ReasonDelete
}

// scale guards `kubectl scale` and autoscalers. The Scale object carries no
// labels, so the webhook configuration cannot select guarded StatefulSets for
// it: the handler reads the parent and its namespace.
func (g *Guard) scale(ctx context.Context, req admission.Request) (admission.Response, policy.Reason) {
	var old, updated autoscalingv1.Scale
	if err := decode(req.OldObject, &old, scaleKind); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode old Scale: %w", err)), ""
	}
	if err := decode(req.Object, &updated, scaleKind); err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode Scale: %w", err)), ""
	}
	if updated.Spec.Replicas == old.Spec.Replicas {
		return admission.Allowed(""), ""
	}
	var sts appsv1.StatefulSet
	if err := g.Reader.Get(ctx, types.NamespacedName{Namespace: req.Namespace, Name: req.Name}, &sts); err != nil {
		return admission.Denied(fmt.Sprintf("snapgate: could not read statefulset %s/%s to guard its scale (%v); run the same command again", req.Namespace, req.Name, err)), policy.ReasonScaleDown
	}
	if st, _ := policy.ParseRollbackState(sts.Annotations); st.InProgress() {
		return rollbackBusy(&sts, st), ""
	}
	if updated.Spec.Replicas > old.Spec.Replicas {
		return admission.Allowed(""), ""
	}
	guarded, err := g.guarded(ctx, &sts)
	if err != nil {
		return admission.Denied(fmt.Sprintf("snapgate: could not read namespace %s to guard the scale-down of statefulset %s (%v); run the same command again", req.Namespace, req.Name, err)), policy.ReasonScaleDown
	}
	if !guarded {
		return admission.Allowed(""), ""
	}
	change := snapshotter.Change{Reason: policy.ReasonScaleDown, Old: &sts, NewReplicas: updated.Spec.Replicas, UserInfo: req.UserInfo}
	if skip := strings.TrimSpace(sts.Annotations[policy.Skip]); skip != "" {
		if !isDryRun(req) {
			// A Scale cannot carry the removal; the engine removes it instead.
			if err := g.Engine.ClearSkip(ctx, &sts); err != nil {
				log.FromContext(ctx).Error(err, "Remove skip annotation", "statefulSet", client.ObjectKeyFromObject(&sts))
			}
		}
		return g.skipped(ctx, req, change, skipReason(skip)), policy.ReasonScaleDown
	}
	p, denied := policyInForce(change, nil)
	if denied != nil {
		return *denied, policy.ReasonScaleDown
	}
	if !p.Triggers(policy.ReasonScaleDown) {
		return admission.Allowed(""), ""
	}
	// A Scale has no annotations: the Recorder writes the record onto the
	// StatefulSet once the scale is stored.
	change.RecordPending = true
	return g.guard(ctx, req, change, p, nil), policy.ReasonScaleDown
}

// policyInForce is the policy that guards a change: the stored StatefulSet's,
// so that a change cannot switch its own guard off in passing. When that one
// does not parse (it was written while snapgate was down, or before it was
// installed), the guard fails closed: the change is denied, naming every bad
// annotation, unless updated (nil when the request carries no StatefulSet)
// fixes them, and then updated's policy guards it.
func policyInForce(change snapshotter.Change, updated *appsv1.StatefulSet) (policy.Policy, *admission.Response) {
	p, errs := policy.Parse(change.Old)
	if len(errs) == 0 {
		return p, nil
	}
	if updated != nil {
		fixed, ferrs := policy.Parse(updated)
		if len(ferrs) == 0 {
			return fixed, nil
		}
		errs = ferrs // what this change still has to fix
	}
	sts := change.Old
	resp := admission.Denied(fmt.Sprintf("snapgate: the %s change to statefulset %s/%s was not applied: its snapgate annotations cannot be read, "+
		"so snapgate cannot tell how to guard it: %s; fix or remove them (in this change, or first with `kubectl annotate`), "+
		"or let this change through without snapshots with `kubectl annotate statefulset %s -n %s %s=<reason>`",
		change.Reason, sts.Namespace, sts.Name, errs.ToAggregate(), sts.Name, sts.Namespace, policy.Skip))
	return policy.Policy{}, &resp
}

// skipped lets a change through without snapshots, says so, and records who
// skipped and why (not for a dry run, which changes nothing).
func (g *Guard) skipped(ctx context.Context, req admission.Request, change snapshotter.Change, why string) admission.Response {
	if !isDryRun(req) {
		g.Engine.RecordSkipped(ctx, change, why)
	}
	return admission.Allowed("").WithWarnings(fmt.Sprintf("snapgate: %s change to statefulset %s went through WITHOUT snapshots: %s",
		change.Reason, change.Old.Name, why))
}

func skipReason(value string) string { return fmt.Sprintf("%s=%q", policy.Skip, value) }

// guarded applies the opt-in rules to a StatefulSet the configuration could not
// select: its own guard label, else its namespace's.
func (g *Guard) guarded(ctx context.Context, sts *appsv1.StatefulSet) (bool, error) {
	switch sts.Labels[policy.GuardLabel] {
	case "enabled":
		return true, nil
	case "disabled":
		return false, nil
	}
	var ns corev1.Namespace
	if err := g.Reader.Get(ctx, types.NamespacedName{Name: sts.Namespace}, &ns); err != nil {
		return false, err
	}
	return ns.Labels[policy.GuardLabel] == "enabled", nil
}

// recordFunc builds the patch that records a set on the changed object.
type recordFunc func(*snapshotter.Plan) ([]jsonpatch.JsonPatchOperation, error)

// guard plans, takes and records a set, within the budget, and answers. record
// is nil where the request cannot carry the record.
func (g *Guard) guard(ctx context.Context, req admission.Request, change snapshotter.Change, p policy.Policy, record recordFunc) admission.Response {
	start := g.now()
	ctx, cancel := context.WithTimeout(ctx, g.budget())
	defer cancel()
	sts := change.Old

	plan, err := g.Engine.Plan(ctx, change, p)
	if err != nil {
		var pe *snapshotter.PlanError
		if errors.As(err, &pe) {
			return admission.Denied(fmt.Sprintf("snapgate: %s change to statefulset %s/%s denied: %s", change.Reason, sts.Namespace, sts.Name, pe))
		}
		return admission.Denied(fmt.Sprintf("snapgate: could not plan snapshots of statefulset %s/%s (%v); the change was not applied; run the same command again", sts.Namespace, sts.Name, err))
	}
	if len(plan.Snapshots) == 0 {
		if len(plan.LeftOut) == 0 {
			return admission.Allowed("").WithWarnings(fmt.Sprintf("snapgate: statefulset %s has no volume claims to snapshot; the change went through as is", sts.Name))
		}
		// Nothing holds data yet (no replica ever got a volume): nothing to lose.
		return g.skipped(ctx, req, change, "nothing to snapshot: "+leftOut(plan))
	}
	if isDryRun(req) {
		return admission.Allowed("").WithWarnings(notes(plan, snapshotter.Progress{}, fmt.Sprintf("snapgate (dry run): a real request would take snapshot set %s of %s: %s",
			plan.Set, snapshotter.Count(len(plan.Snapshots), "PVC"), strings.Join(pvcNames(plan), ", ")))...)
	}
	prog, err := g.Engine.Take(ctx, plan)
	if err != nil {
		return g.denyTake(ctx, plan, prog, err, g.now().Sub(start))
	}
	g.Engine.RecordTaken(ctx, plan, prog, g.now().Sub(start))

	warning := fmt.Sprintf("snapgate: took snapshot set %s (%s, %s) before this %s change; to roll back: kubectl annotate statefulset %s -n %s %s=%s",
		plan.Set, snapshotter.Count(prog.Total, "snapshot"), plan.WaitFor, plan.Reason, sts.Name, sts.Namespace, policy.RollbackTo, plan.Set)
	if record == nil {
		return admission.Allowed("").WithWarnings(notes(plan, prog, warning)...)
	}
	ops, err := record(plan)
	if err != nil {
		return admission.Denied(fmt.Sprintf("snapgate: could not record snapshot set %s (%v); run the same command again", plan.Set, err))
	}
	return admission.Patched("", ops...).WithWarnings(notes(plan, prog, warning)...)
}

// notes are the warnings of a set taken (or planned): the first one, then
// what the set lacks and why, so that nothing is left out silently.
func notes(plan *snapshotter.Plan, prog snapshotter.Progress, first string) []string {
	out := []string{first}
	if len(plan.LeftOut) > 0 {
		out = append(out, fmt.Sprintf("snapgate: set %s leaves out what holds no data: %s", plan.Set, leftOut(plan)))
	}
	if len(prog.Hooks.NotRunning) > 0 {
		out = append(out, fmt.Sprintf("snapgate: pods that are not running got no hooks; their volumes were snapshotted as they are (crash-consistent): %s",
			strings.Join(prog.Hooks.NotRunning, "; ")))
	}
	for _, w := range prog.Hooks.Warnings {
		out = append(out, "snapgate: "+w)
	}
	if tf := prog.Hooks.ThawFailed; tf != nil {
		out = append(out, fmt.Sprintf("snapgate: the set is good, but the post-hook failed in %s, which may still be quiesced; snapgate retries it (see the StatefulSet's Events): %v",
			strings.Join(tf.Pods, ", "), tf.Err))
	}
	return out
}

func leftOut(plan *snapshotter.Plan) string {
	out := make([]string, len(plan.LeftOut))
	for i, l := range plan.LeftOut {
		out[i] = l.String()
	}
	return strings.Join(out, "; ")
}

func (g *Guard) denyTake(ctx context.Context, plan *snapshotter.Plan, prog snapshotter.Progress, err error, elapsed time.Duration) admission.Response {
	sts := plan.StatefulSet
	var se *snapshotter.SnapshotError
	var pe *snapshotter.PlanError
	var qe *snapshotter.QuiesceError
	switch {
	case errors.As(err, &qe):
		return admission.Denied(fmt.Sprintf("snapgate: the %s change to statefulset %s was not applied: %s; no snapshot was taken; %s",
			plan.Reason, sts, qe, thawed(prog.Hooks)))
	case errors.Is(err, context.DeadlineExceeded):
		done, what := prog.Ready, "ready"
		if plan.WaitFor == policy.WaitCut {
			done, what = prog.Cut, "cut"
		}
		log.FromContext(ctx).Info("Snapshot set not ready within budget", "statefulSet", sts, "set", plan.Set, "done", done, "total", prog.Total)
		return admission.Denied(fmt.Sprintf("snapgate: %d/%d snapshots of statefulset %s %s after %s (set %s); the change was not applied yet; run the same command again to continue%s%s",
			done, prog.Total, sts, what, elapsed.Round(time.Second), plan.Set, helmRetry(plan.Change.Old), andThawed(prog.Hooks)))
	case errors.As(err, &se):
		return admission.Denied(fmt.Sprintf("snapgate: the %s change to statefulset %s was not applied: %s%s; fix the snapshot class or driver and run the same command again, or let this change through without snapshots with `kubectl annotate statefulset %s -n %s %s=<reason>`",
			plan.Reason, sts, se, andThawed(prog.Hooks), sts.Name, sts.Namespace, policy.Skip))
	case errors.As(err, &pe):
		return admission.Denied(fmt.Sprintf("snapgate: the %s change to statefulset %s was not applied: %s", plan.Reason, sts, pe))
	default:
		log.FromContext(ctx).Error(err, "Take snapshot set", "statefulSet", sts, "set", plan.Set)
		return admission.Denied(fmt.Sprintf("snapgate: could not take snapshot set %s of statefulset %s (%v); the change was not applied%s; run the same command again",
			plan.Set, sts, err, andThawed(prog.Hooks)))
	}
}

// HelmRelease is the annotation Helm 3 and 4 put on every object of a release.
const HelmRelease = "meta.helm.sh/release-name"

// helmRetry says what "the same command" is for an object of a Helm release:
// a rollback Helm starts by itself (upgrade --atomic) is not a command the
// user typed.
func helmRetry(sts *appsv1.StatefulSet) string {
	release := sts.Annotations[HelmRelease]
	if release == "" {
		return ""
	}
	return fmt.Sprintf(" (for Helm release %s: if this was Helm rolling back, after `helm upgrade --atomic` or `helm rollback`, run `helm rollback %s -n %s`)",
		release, release, sts.Namespace)
}

// thawed says exactly which pods were quiesced and thawed, and which were
// quiesced and are not thawed (their post-hook failed).
func thawed(h snapshotter.HookOutcome) string {
	if len(h.Quiesced) == 0 {
		return "no pod was quiesced"
	}
	if h.ThawFailed == nil {
		return fmt.Sprintf("every pod that was quiesced was thawed (%s)", strings.Join(h.Quiesced, ", "))
	}
	msg := fmt.Sprintf("pods NOT thawed (their post-hook failed; snapgate retries it): %s (%v)", strings.Join(h.ThawFailed.Pods, ", "), h.ThawFailed.Err)
	if ok := h.Thawed(); len(ok) > 0 {
		msg = fmt.Sprintf("pods thawed: %s; ", strings.Join(ok, ", ")) + msg
	}
	return msg
}

// andThawed is thawed for a denial after hooks ran, empty when none did.
func andThawed(h snapshotter.HookOutcome) string {
	if len(h.Quiesced) == 0 {
		return ""
	}
	return "; " + thawed(h)
}

// rollbackStep tells the rollback controller's writes: each moves the
// rollback's recorded state along, while a rollback is in progress.
func rollbackStep(old, updated *appsv1.StatefulSet) bool {
	before, after := old.Annotations[policy.RollbackStatus], updated.Annotations[policy.RollbackStatus]
	if before == after {
		return false
	}
	b, _ := policy.ParseRollbackState(old.Annotations)
	a, _ := policy.ParseRollbackState(updated.Annotations)
	return b.InProgress() || a.InProgress()
}

// duringRollback denies a change of template, replicas or rollback target while
// a rollback is in progress: the rollback would overwrite it, or start pods on
// PVCs being replaced.
func duringRollback(old, updated *appsv1.StatefulSet) (admission.Response, bool) {
	st, _ := policy.ParseRollbackState(old.Annotations)
	if !st.InProgress() {
		return admission.Response{}, false
	}
	target, asked := updated.Annotations[policy.RollbackTo]
	if equality.Semantic.DeepEqual(old.Spec.Template, updated.Spec.Template) &&
		snapshotter.Replicas(old) == snapshotter.Replicas(updated) && (!asked || target == st.Request) {
		return admission.Response{}, false
	}
	return rollbackBusy(old, st), true
}

func rollbackBusy(sts *appsv1.StatefulSet, st policy.RollbackState) admission.Response {
	return admission.Denied(fmt.Sprintf("snapgate: statefulset %s is being rolled back to set %s (%s: %s); its pod template, replicas and rollback target are "+
		"left alone until the rollback ends; follow it with `kubectl snapgate rollback sts/%s -n %s --wait`, then apply the change again",
		sts.Name, orRequest(st), st.Phase, st.Message, sts.Name, sts.Namespace))
}

func orRequest(st policy.RollbackState) string {
	if st.Set != "" {
		return st.Set
	}
	return st.Request
}

func isDryRun(req admission.Request) bool { return req.DryRun != nil && *req.DryRun }

func pvcNames(plan *snapshotter.Plan) []string {
	out := make([]string, 0, len(plan.Snapshots))
	for _, s := range plan.Snapshots {
		out = append(out, s.PVC)
	}
	sort.Strings(out)
	return out
}
