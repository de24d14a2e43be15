package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
	"github.com/snapgate/snapgate/snapshotter/presets"
)

// DefaultTimeout bounds a hook that names no timeout of its own.
const DefaultTimeout = 10 * time.Second

// Hook is what runs in one pod.
type Hook struct {
	Pre, Post []string
	Container string
	Timeout   time.Duration
	// PostContainer and PostTimeout, when set, are the post-hook's own
	// (Velero's post.hook.backup.velero.io keys); else Container and Timeout.
	PostContainer string
	PostTimeout   time.Duration
	// Continue lets the change go on when the pre-hook fails.
	Continue bool
	// Warnings are what the hook's annotations say that snapgate did not
	// take (a bad Velero timeout), for the admission warning.
	Warnings []string
	// Source says where the hook came from, for messages.
	Source string
	// FromAnnotations: the command was written by someone in an annotation, so
	// the requester must be allowed to exec it themselves.
	FromAnnotations bool
	// freezesMounts: Pre and Post take, as their last arguments, the paths at
	// which the container mounts the StatefulSet's volumes.
	freezesMounts bool
}

// Velero's pod annotations, read with Velero's meaning (vmware-tanzu/velero
// internal/hook/item_hook_handler.go, getPodExecHookFromAnnotations): a
// phase's command, container, on-error and timeout are read together from
// one prefix; the pre-hook falls back to the unphased legacy keys only when
// pre.hook...command is absent; the post-hook has keys of its own.
const (
	veleroPre    = "pre.hook.backup.velero.io/"
	veleroPost   = "post.hook.backup.velero.io/"
	veleroLegacy = "hook.backup.velero.io/"
	// veleroTimeout is Velero's default for a hook (pkg/podexec
	// pod_command_executor.go defaultTimeout), also for a timeout that does not
	// parse or is not above zero.
	veleroTimeout = 30 * time.Second
)

// veleroHook is one phase of Velero's annotations.
type veleroHook struct {
	command   []string
	container string
	timeout   time.Duration
	onError   string
}

// readVelero reads the keys under prefix; warnings are what Velero would only
// log (a timeout or on-error it does not take); an error is a command that
// cannot be read, named with its field path.
func readVelero(pod *corev1.Pod, prefix string) (h veleroHook, warnings []string, err error) {
	ann := pod.Annotations
	fp := field.NewPath("metadata", "annotations")
	if h.command, err = veleroCommand(ann[prefix+"command"]); err != nil {
		return h, nil, fmt.Errorf("pod %s: %w", pod.Name, field.Invalid(fp.Key(prefix+"command"), ann[prefix+"command"], err.Error()))
	}
	h.container, h.timeout = ann[prefix+"container"], veleroTimeout
	if t, ok := ann[prefix+"timeout"]; ok {
		if d, perr := time.ParseDuration(t); perr != nil || d <= 0 {
			warnings = append(warnings, fmt.Sprintf("pod %s: %s=%q is not a duration above 0; using Velero's default of %s", pod.Name, prefix+"timeout", t, veleroTimeout))
		} else {
			h.timeout = d
		}
	}
	switch v := ann[prefix+"on-error"]; v {
	case "", "Fail", "Continue":
		h.onError = v
	default:
		warnings = append(warnings, fmt.Sprintf("pod %s: %s=%q is neither Fail nor Continue; using Fail", pod.Name, prefix+"on-error", v))
	}
	return h, warnings, nil
}

// Resolve picks the hook for one pod: the StatefulSet's annotations, then its
// preset, then Velero's annotations on the pod. It returns nil when none applies.
func Resolve(p policy.Hooks, pod *corev1.Pod) (*Hook, error) {
	var h *Hook
	switch {
	case len(p.Pre) > 0 || len(p.Post) > 0:
		h = &Hook{Pre: p.Pre, Post: p.Post, Source: "snapgate.io/pre-hook and post-hook", FromAnnotations: true}
	case p.Preset != "":
		preset, ok := presets.All[p.Preset]
		if !ok {
			return nil, fmt.Errorf("hook preset %q is not known", p.Preset)
		}
		h = &Hook{Pre: preset.Pre, Post: preset.Post, freezesMounts: preset.FreezesMounts, Source: "preset " + p.Preset}
	default:
		return velero(pod)
	}
	h.Container, h.Timeout, h.Continue = p.Container, p.Timeout, p.OnError == "Continue"
	return h, nil
}

func velero(pod *corev1.Pod) (*Hook, error) {
	pre, warnings, err := readVelero(pod, veleroPre)
	if err != nil {
		return nil, err
	}
	if len(pre.command) == 0 {
		if pre, warnings, err = readVelero(pod, veleroLegacy); err != nil {
			return nil, err
		}
	}
	post, postWarnings, err := readVelero(pod, veleroPost)
	if err != nil {
		return nil, err
	}
	if len(pre.command) == 0 && len(post.command) == 0 {
		return nil, nil
	}
	h := &Hook{Source: "Velero's hook annotations", FromAnnotations: true}
	if len(pre.command) > 0 {
		h.Pre, h.Container, h.Timeout = pre.command, pre.container, pre.timeout
		// A failing pre-hook denies the change unless it says Continue.
		h.Continue = pre.onError == "Continue"
		h.Warnings = warnings
	}
	if len(post.command) > 0 {
		h.Post, h.PostContainer, h.PostTimeout = post.command, post.container, post.timeout
		h.Warnings = append(h.Warnings, postWarnings...)
	}
	return h, nil
}

// veleroCommand reads Velero's command: a JSON list, or a single command.
func veleroCommand(v string) ([]string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	if strings.HasPrefix(v, "[") {
		var argv []string
		if err := json.Unmarshal([]byte(v), &argv); err != nil || len(argv) == 0 {
			return nil, errors.New(`want a JSON list of strings, such as ["/bin/sh","-c","sync"]`)
		}
		return argv, nil
	}
	return []string{v}, nil
}

// Runner is the snapshotter's Quiescer.
type Runner struct {
	// Exec runs commands in containers.
	Exec Executor
	// Client reads pods and asks SubjectAccessReviews.
	Client client.Client
	// Metrics, when set, records each command's duration and failures.
	Metrics *snapshotter.Metrics
	// ExecAsRequester says Exec runs with the requester's own credentials (the
	// CLI): the API server then checks pods/exec itself, and no review is asked.
	ExecAsRequester bool
	// InFlight, when set, records the post-hooks owed while hooks are in
	// flight, so that another replica runs them if this one dies.
	InFlight *InFlight
	// Clock times the hooks; the real clock when nil.
	Clock clock.PassiveClock
	// NoHooksIn are namespaces where hooks never run, whatever asks:
	// policy.ProtectedNamespaces. Their sets are taken without hooks, with a
	// warning that says so.
	NoHooksIn []string
}

func (r *Runner) clock() clock.PassiveClock {
	if r.Clock != nil {
		return r.Clock
	}
	return clock.RealClock{}
}

var _ snapshotter.Quiescer = (*Runner)(nil)

type target struct {
	pod  string
	hook *Hook
	// container and postContainer are the resolved containers of the pre-
	// and post-hook.
	container, postContainer string
	// notRunning says why the pod gets no pre-hook; empty when it runs.
	notRunning string
	// restarts and containerID are the container's when the pod was read.
	restarts    int32
	containerID string
}

// HookError is a hook that failed; its message says where and how.
type HookError struct {
	Phase, Pod, Container, Source string
	Err                           error
	Stderr                        string
}

func (e *HookError) Error() string {
	msg := fmt.Sprintf("%s-hook (%s) in pod %s, container %s, failed: %v", e.Phase, e.Source, e.Pod, e.Container, e.Err)
	if e.Stderr != "" {
		msg += "; stderr: " + e.Stderr
	}
	return msg
}

func (e *HookError) Unwrap() error { return e.Err }

// Quiesce runs the pre-hooks in every affected pod that is running, in
// parallel, and returns the thaw, which runs the post-hooks in every pod whose
// pre-hook was attempted. A pod that is not running gets no hooks: nothing in
// it is writing, and exec into it would fail and deny the change that may be
// its fix. A pod whose pre-hook failed because it stopped meanwhile counts as
// not running too.
func (r *Runner) Quiesce(ctx context.Context, plan *snapshotter.Plan) (snapshotter.Quiesced, error) {
	sts := plan.Change.Old
	if slices.Contains(r.NoHooksIn, sts.Namespace) {
		return snapshotter.Quiesced{Warnings: []string{fmt.Sprintf("no hooks run in namespace %s (snapgate never execs in kube-system or its own namespace): its snapshots are crash-consistent", sts.Namespace)}}, nil
	}
	all, err := r.targets(ctx, plan)
	if err != nil {
		return snapshotter.Quiesced{}, err
	}
	q, targets := running(all)
	if len(targets) == 0 {
		return q, nil
	}
	if !r.ExecAsRequester {
		if err := r.authorize(ctx, sts, plan.Change.UserInfo, targets); err != nil {
			return q, err
		}
	}
	var record *held
	if r.InFlight != nil {
		if record, err = r.InFlight.begin(ctx, sts, targets); err != nil {
			return q, err
		}
	}
	attempted, stopped, err := r.runPre(ctx, sts, targets)
	q.NotRunning = append(q.NotRunning, stopped...)
	slices.Sort(q.NotRunning)
	q.Thaw = func(tctx context.Context) error { return r.runPost(tctx, sts, attempted, record) }
	for _, t := range attempted {
		q.Pods = append(q.Pods, t.pod)
	}
	slices.Sort(q.Pods)
	return q, err
}

// running splits the targets into those whose container runs and gets hooks,
// and those named in NotRunning; their warnings are gathered once.
func running(all []target) (snapshotter.Quiesced, []target) {
	var q snapshotter.Quiesced
	var targets []target
	for _, t := range all {
		for _, w := range t.hook.Warnings {
			if !slices.Contains(q.Warnings, w) {
				q.Warnings = append(q.Warnings, w)
			}
		}
		if t.notRunning != "" {
			q.NotRunning = append(q.NotRunning, fmt.Sprintf("pod %s (%s)", t.pod, t.notRunning))
			continue
		}
		targets = append(targets, t)
	}
	return q, targets
}

// runPre runs the pre-hooks in parallel. It returns every target whose
// pre-hook was attempted (each gets its post-hook, whatever happened), the
// pods that stopped while their hook ran (snapshotted as they are), and the
// failures that stop the set.
func (r *Runner) runPre(ctx context.Context, sts *appsv1.StatefulSet, targets []target) (attempted []target, stopped []string, err error) {
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for _, t := range targets {
		if len(t.hook.Pre) == 0 {
			attempted = append(attempted, t) // nothing to run before; still thaw
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			attempted = append(attempted, t)
			mu.Unlock()
			err := r.run(ctx, sts.Namespace, t, "pre", t.hook.Pre)
			state := ""
			if err != nil && !errors.Is(err, context.DeadlineExceeded) {
				// A hook that hung is no sign of a container that stopped.
				state = r.stopped(ctx, sts, t, err)
			}
			switch {
			case err != nil && state != "":
				log.FromContext(ctx).Info("Pre-hook failed in a pod that stopped meanwhile; snapshotting it as it is", "pod", t.pod, "state", state, "error", err.Error())
				err = nil
			case err != nil && t.hook.Continue:
				log.FromContext(ctx).Info("Pre-hook failed; continuing as its on-error says", "pod", t.pod, "error", err.Error())
				err = nil
			}
			mu.Lock()
			errs = append(errs, err)
			if state != "" {
				stopped = append(stopped, fmt.Sprintf("pod %s (%s)", t.pod, state))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return attempted, stopped, errors.Join(errs...)
}

// runPost runs the post-hooks of every attempted target in parallel, then ends
// the record of what was owed: only the pods whose post-hook failed stay in it.
func (r *Runner) runPost(ctx context.Context, sts *appsv1.StatefulSet, attempted []target, record *held) error {
	var wg sync.WaitGroup
	errs := make([]error, len(attempted))
	for i, t := range attempted {
		if len(t.hook.Post) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = r.run(ctx, sts.Namespace, t, "post", t.hook.Post)
		}()
	}
	wg.Wait()
	var failed []string
	for i, err := range errs {
		if err != nil {
			failed = append(failed, attempted[i].pod)
		}
	}
	// The post-hooks have run; a record left behind only runs them again.
	if err := record.end(ctx, failed); err != nil {
		log.FromContext(ctx).Error(err, "Ending the record of post-hooks in flight")
	}
	if len(failed) == 0 {
		return nil
	}
	return &snapshotter.ThawError{Pods: failed, Err: errors.Join(errs...)}
}

// StatusLag bounds how long a pod whose pre-hook failed is watched for its
// status to show that the container stopped: the kubelet reports a container
// that exits within about a second (its PLEG relists every second), and exec
// into a container that has just exited fails before that.
const StatusLag = 3 * time.Second

// stopped says why a pod whose pre-hook failed is not running now: the
// container runtime had no such container (it exited; the kubelet's status
// lags), or the pod, read again for up to StatusLag, shows a stop or a
// restart (a crash loop that was running when first read). Empty when it
// still runs as it did, and the hook's failure stands.
func (r *Runner) stopped(ctx context.Context, sts *appsv1.StatefulSet, t target, hookErr error) string {
	// The container name is the pod spec's (checked in target): the runtime
	// not finding it means it is not running.
	if strings.Contains(hookErr.Error(), "container not found") {
		return fmt.Sprintf("container %s had exited when its pre-hook ran: exec found no such container", t.container)
	}
	var why string
	_ = wait.PollUntilContextTimeout(ctx, StatusLag/10, StatusLag, true, func(ctx context.Context) (bool, error) {
		var pod corev1.Pod
		if err := r.Client.Get(ctx, types.NamespacedName{Namespace: sts.Namespace, Name: t.pod}, &pod); err != nil {
			return false, nil
		}
		if w := notRunning(&pod, t.container); w != "" {
			why = "stopped while its pre-hook ran: " + w
		} else if st := containerStatus(&pod, t.container); st != nil && (st.RestartCount != t.restarts || st.ContainerID != t.containerID) {
			why = fmt.Sprintf("container %s restarted while its pre-hook ran", t.container)
		}
		return why != "", nil
	})
	return why
}

// notRunning says why a pod's hook container cannot take a hook: the pod is
// being deleted or not Running, or the container is waiting, terminated or
// crash-looping (restarted and not ready). Empty when it runs.
func notRunning(pod *corev1.Pod, container string) string {
	if pod.DeletionTimestamp != nil {
		return "it is being deleted"
	}
	if pod.Status.Phase != corev1.PodRunning {
		phase := string(pod.Status.Phase)
		if phase == "" {
			phase = "without a phase"
		}
		for _, c := range pod.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status != corev1.ConditionTrue && c.Reason != "" {
				return fmt.Sprintf("it is %s: %s", phase, c.Reason)
			}
		}
		return "it is " + phase
	}
	st := containerStatus(pod, container)
	switch {
	case st == nil:
		return fmt.Sprintf("container %s has no status yet", container)
	case st.State.Waiting != nil:
		return fmt.Sprintf("container %s is waiting: %s", container, orUnknown(st.State.Waiting.Reason))
	case st.State.Terminated != nil:
		return fmt.Sprintf("container %s has terminated: %s", container, orUnknown(st.State.Terminated.Reason))
	case st.State.Running == nil:
		return fmt.Sprintf("container %s is not running", container)
	case st.RestartCount > 0 && !st.Ready && st.LastTerminationState.Terminated != nil:
		return fmt.Sprintf("container %s is crash-looping: %d restarts, last exit %s, not ready", container, st.RestartCount, orUnknown(st.LastTerminationState.Terminated.Reason))
	}
	return ""
}

// containerStatus is the status of a container or native sidecar, or nil.
func containerStatus(pod *corev1.Pod, name string) *corev1.ContainerStatus {
	for _, list := range [][]corev1.ContainerStatus{pod.Status.ContainerStatuses, pod.Status.InitContainerStatuses} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	return nil
}

func orUnknown(reason string) string {
	if reason == "" {
		return "no reason given"
	}
	return reason
}

// targets are the affected pods that exist, are owned by the StatefulSet, and
// have a hook, read in parallel. A replica without a pod has no application to
// quiesce.
func (r *Runner) targets(ctx context.Context, plan *snapshotter.Plan) ([]target, error) {
	sts := plan.Change.Old
	ordinals := snapshotter.Affected(plan.Change)
	// One List of the StatefulSet's pods, not a Get each: at 100 replicas
	// the reads otherwise outrun the client's rate limit inside the budget.
	pods, err := r.listPods(ctx, sts)
	if err != nil {
		return nil, err
	}
	found := make([]*target, len(ordinals))
	for i, ordinal := range ordinals {
		pod, ok := pods[fmt.Sprintf("%s-%d", sts.Name, ordinal)]
		if !ok {
			continue
		}
		if found[i], err = r.targetOf(ctx, sts, plan.Policy.Hooks, pod); err != nil {
			return nil, err
		}
	}
	var out []target
	for _, t := range found {
		if t != nil {
			out = append(out, *t)
		}
	}
	return out, nil
}

// listPods reads the pods that carry the StatefulSet's selector labels, by
// name; a pod of the StatefulSet always does (the API server requires its
// template's labels to match the selector). A StatefulSet without a selector
// (apps/v1 requires one) is an error: as a selector, nil matches no pod, and the
// set would be cut with no hook run.
func (r *Runner) listPods(ctx context.Context, sts *appsv1.StatefulSet) (map[string]*corev1.Pod, error) {
	if sts.Spec.Selector == nil {
		return nil, fmt.Errorf("statefulset %s/%s has no spec.selector to find its pods by", sts.Namespace, sts.Name)
	}
	sel, err := metav1.LabelSelectorAsSelector(sts.Spec.Selector)
	if err != nil {
		return nil, fmt.Errorf("selector of statefulset %s/%s: %w", sts.Namespace, sts.Name, err)
	}
	var list corev1.PodList
	if err := r.Client.List(ctx, &list, client.InNamespace(sts.Namespace), client.MatchingLabelsSelector{Selector: sel}); err != nil {
		return nil, fmt.Errorf("list pods of statefulset %s/%s: %w", sts.Namespace, sts.Name, err)
	}
	byName := make(map[string]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		byName[list.Items[i].Name] = &list.Items[i]
	}
	return byName, nil
}

// target is the hook of the pod named, or nil when it does not exist, is not
// the StatefulSet's, or has no hook.
func (r *Runner) target(ctx context.Context, sts *appsv1.StatefulSet, hooks policy.Hooks, name string) (*target, error) {
	var pod corev1.Pod
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: sts.Namespace, Name: name}, &pod)
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get pod %s/%s: %w", sts.Namespace, name, err)
	}
	return r.targetOf(ctx, sts, hooks, &pod)
}

// targetOf is the hook of pod, or nil when the pod is not the StatefulSet's
// or has no hook.
func (r *Runner) targetOf(ctx context.Context, sts *appsv1.StatefulSet, hooks policy.Hooks, pod *corev1.Pod) (*target, error) {
	name := pod.Name
	if !ownedBy(pod, sts) {
		log.FromContext(ctx).Info("Not running hooks in a pod the StatefulSet does not own", "pod", name)
		return nil, nil
	}
	hook, err := Resolve(hooks, pod)
	if err != nil || hook == nil {
		return nil, err
	}
	container, postContainer := hook.Container, hook.PostContainer
	if container == "" {
		container = policy.DefaultHookContainer(pod.Annotations, &pod.Spec, sts)
	}
	if postContainer == "" {
		postContainer = container
	}
	for _, c := range []string{container, postContainer} {
		if !slices.Contains(policy.ContainerNames(&pod.Spec), c) {
			return nil, fmt.Errorf("%s: pod %s has no container %q: set snapgate.io/hook-container to one of its containers or native sidecars (%s)",
				hook.Source, name, c, strings.Join(policy.ContainerNames(&pod.Spec), ", "))
		}
	}
	if hook.freezesMounts {
		paths, err := policy.ClaimMounts(&pod.Spec, container, sts)
		if err != nil {
			return nil, fmt.Errorf("hook preset fsfreeze, pod %s: %w", name, err)
		}
		hook.Pre = slices.Concat(hook.Pre, paths)
		hook.Post = slices.Concat(hook.Post, paths)
	}
	t := &target{pod: name, hook: hook, container: container, postContainer: postContainer, notRunning: notRunning(pod, container)}
	if st := containerStatus(pod, container); st != nil {
		t.restarts, t.containerID = st.RestartCount, st.ContainerID
	}
	return t, nil
}

func ownedBy(pod *corev1.Pod, sts *appsv1.StatefulSet) bool {
	ref := metav1.GetControllerOf(pod)
	return ref != nil && ref.UID == sts.UID
}

// authorize refuses to run commands from annotations for a user who could not
// exec them into these pods themselves.
func (r *Runner) authorize(ctx context.Context, sts *appsv1.StatefulSet, user authenticationv1.UserInfo, targets []target) error {
	needed := false
	for _, t := range targets {
		needed = needed || t.hook.FromAnnotations
	}
	if !needed {
		return nil
	}
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range user.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: user.Username, Groups: user.Groups, UID: user.UID, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{Namespace: sts.Namespace, Verb: "create", Resource: "pods", Subresource: "exec"},
	}}
	if err := r.Client.Create(ctx, sar); err != nil {
		return fmt.Errorf("check whether %s may exec into pods of %s: %w", user.Username, sts.Namespace, err)
	}
	if !sar.Status.Allowed {
		return &DeniedError{User: user.Username, Namespace: sts.Namespace, Source: targets[0].hook.Source}
	}
	return nil
}

// DeniedError is a change whose annotation hooks the requester may not run.
type DeniedError struct{ User, Namespace, Source string }

func (e *DeniedError) Error() string {
	return fmt.Sprintf("user %s may not create pods/exec in namespace %s, so snapgate will not run the hook commands of %s on their behalf; "+
		"ask for that right, have someone who holds it make the change, or use snapgate.io/hook-preset", e.User, e.Namespace, e.Source)
}

// run runs one hook command with the hook's timeout.
func (r *Runner) run(ctx context.Context, namespace string, t target, phase string, argv []string) error {
	timeout, container := t.hook.Timeout, t.container
	if phase == "post" {
		container = t.postContainer
		if t.hook.PostTimeout > 0 {
			timeout = t.hook.PostTimeout
		}
	}
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := r.clock().Now()
	_, stderr, err := r.Exec.Exec(hctx, namespace, t.pod, container, argv)
	elapsed := r.clock().Since(start)
	switch {
	case err == nil || hctx.Err() == nil:
	case ctx.Err() != nil:
		// The request's budget ended first: say so, not the hook's timeout.
		err = fmt.Errorf("cut short after %s by the end of the request's time budget, before the hook's own timeout of %s: %w",
			elapsed.Round(10*time.Millisecond), timeout, ctx.Err())
	default:
		err = fmt.Errorf("timed out after %s: %w", timeout, hctx.Err())
	}
	r.Metrics.ObserveHook(phase, elapsed, err)
	log.FromContext(ctx).V(1).Info("Hook ran", "phase", phase, "pod", t.pod, "elapsed", elapsed, "error", err)
	if err != nil {
		return &HookError{Phase: phase, Pod: namespace + "/" + t.pod, Container: container, Source: t.hook.Source, Err: err, Stderr: tail(stderr, 512)}
	}
	return nil
}

// tail is the end of a command's stderr, where the reason usually is.
func tail(b []byte, n int) string {
	s := strings.TrimSpace(string(b))
	if len(s) > n {
		s = "..." + s[len(s)-n:]
	}
	return s
}
