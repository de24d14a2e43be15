package verify

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	watchtools "k8s.io/client-go/tools/watch"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/hooks"
	"github.com/snapgate/snapgate/snapshotter/policy"
	"github.com/snapgate/snapgate/snapshotter/presets"
	"github.com/snapgate/snapgate/snapshotter/restore"
	"github.com/snapgate/snapgate/snapshotter/rollback"
)

// Defaults of the Verifier.
const (
	// DefaultTimeout bounds the wait for the scratch pods to be Ready and
	// for the check to pass.
	DefaultTimeout = 10 * time.Minute
	// DefaultRetry is how often a check that fails is run again within the
	// timeout: a server without a readiness probe is Ready before it answers.
	DefaultRetry = 2 * time.Second
)

// Verifier verifies sets. It creates and deletes StatefulSets and PVCs, and
// execs into the pods of the ones it creates only.
type Verifier struct {
	// Client creates, reads and deletes the scratch objects and marks the
	// set's snapshots.
	Client client.Client
	// Kube watches the scratch StatefulSet.
	Kube kubernetes.Interface
	// Exec runs the check in the scratch pods.
	Exec hooks.Executor
	// Events tells the outcome on the StatefulSet the set was taken of.
	Events  events.EventRecorder
	Metrics *Metrics
	// Timeout bounds the wait for Ready and the check; DefaultTimeout when zero.
	Timeout time.Duration
	// Retry is how often a failing check is run again; DefaultRetry when zero.
	Retry time.Duration
	// Clock tells the time; the real clock when nil.
	Clock clock.PassiveClock
}

// Result is the outcome of one verify.
type Result struct {
	Set    string
	Passed bool
	// How says what was checked and, when it failed, what failed.
	How string
	// At is when the verify ended.
	At time.Time
	// Scratch is the StatefulSet the set was restored as, since deleted.
	Scratch types.NamespacedName
}

// Verify verifies set in namespace: restore, Ready, check, record, delete.
// A check that fails is a Result that did not pass, recorded as such; an
// error is a verify that could not be made (the set is not ready, or the
// scratch copy could not be created), and nothing is recorded. progress is
// told each step.
func (v *Verifier) Verify(ctx context.Context, namespace, set string, progress func(string)) (Result, error) {
	res := Result{Set: set}
	snaps, err := snapshotter.PerPVC{Snapshots: v.Client}.List(ctx, namespace, client.MatchingLabels{snapshotter.LabelSet: set, snapshotter.LabelManagedBy: snapshotter.ManagedBy})
	if err != nil {
		return res, fmt.Errorf("list snapshots of set %s: %w", set, err)
	}
	if len(snaps) == 0 {
		return res, fmt.Errorf("there is no snapshot set %q in namespace %s; `snapgate list sts/NAME` shows a StatefulSet's sets", set, namespace)
	}
	live, chk, err := v.checkOf(ctx, &snaps[0])
	if err != nil {
		return res, err
	}
	res.Scratch = types.NamespacedName{Namespace: namespace, Name: scratchName(set, v.now())}
	cp, err := restore.Plan(ctx, v.Client, set, namespace, res.Scratch)
	if err != nil {
		return res, err
	}
	cp.StatefulSet.Labels[snapshotter.LabelVerifyOf] = snapshotter.LabelValue(set)
	for _, pvc := range cp.Claims {
		pvc.Labels = withLabel(pvc.Labels, snapshotter.LabelVerifyOf, snapshotter.LabelValue(set))
	}
	progress(fmt.Sprintf("Restoring set %s as scratch %s...", set, cp))
	defer v.deleteScratch(ctx, cp, progress)
	if err := restore.Create(ctx, v.Client, restore.Waiter{}, cp, func(string) {}); err != nil {
		return res, err
	}
	res.Passed, res.How = v.run(ctx, cp, chk, progress)
	res.At = v.now().UTC()
	v.record(ctx, live, snaps, res)
	return res, nil
}

// check is what a verify runs in each restored pod.
type check struct {
	argv      []string
	container string
	// says what is checked, for the record.
	says string
}

// checkOf is the StatefulSet the snapshot was taken of (nil when it is gone:
// its sets can still be verified) and the check its policy asks for: the
// StatefulSet's snapgate.io/verify-command, else its preset's check, else
// none (the pods being Ready is all that is checked). A policy that cannot
// be read is an error naming it.
func (v *Verifier) checkOf(ctx context.Context, vs *snapv1.VolumeSnapshot) (*appsv1.StatefulSet, check, error) {
	var sts appsv1.StatefulSet
	err := v.Client.Get(ctx, types.NamespacedName{Namespace: vs.Namespace, Name: snapshotter.StatefulSetName(vs)}, &sts)
	switch {
	case apierrors.IsNotFound(err):
		return nil, check{says: "pods Ready (the StatefulSet is gone, so no check of its own)"}, nil
	case err != nil:
		return nil, check{}, fmt.Errorf("get statefulset %s/%s: %w", vs.Namespace, snapshotter.StatefulSetName(vs), err)
	}
	if string(sts.UID) != vs.Annotations[snapshotter.AnnotationStatefulSetUID] {
		return nil, check{says: "pods Ready (the StatefulSet of that name is another, so no check of its own)"}, nil
	}
	p, errs := policy.Parse(&sts)
	if len(errs) > 0 {
		return &sts, check{}, fmt.Errorf("statefulset %s/%s has bad snapgate annotations, so its check is unknown: %w", sts.Namespace, sts.Name, errs.ToAggregate())
	}
	c := check{container: p.Hooks.Container}
	switch pre := presets.All[p.Hooks.Preset]; {
	case len(p.VerifyCommand) > 0:
		b, _ := json.Marshal(p.VerifyCommand)
		c.argv, c.says = p.VerifyCommand, policy.VerifyCommand+" "+string(b)
	case len(pre.Verify) > 0:
		c.argv, c.says = pre.Verify, "preset "+p.Hooks.Preset+": "+pre.Checks
	case p.Hooks.Preset != "":
		c.says = "pods Ready (the " + p.Hooks.Preset + " preset has no check; set " + policy.VerifyCommand + " for one)"
	default:
		c.says = "pods Ready (no check: set " + policy.HookPreset + " or " + policy.VerifyCommand + ")"
	}
	return &sts, c, nil
}

// run waits for the scratch pods to be Ready and runs the check in each,
// again until it passes or the timeout.
func (v *Verifier) run(ctx context.Context, cp *rollback.Copy, c check, progress func(string)) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, v.timeout())
	defer cancel()
	sts := cp.StatefulSet
	progress(fmt.Sprintf("Waiting for the pods of %s to be Ready...", sts.Name))
	if err := v.waitReady(ctx, sts); err != nil {
		return false, fmt.Sprintf("%s: the restored pods were not Ready within %s: %s", c.says, v.timeout(), v.podStates(context.WithoutCancel(ctx), sts))
	}
	if len(c.argv) == 0 {
		return true, c.says
	}
	start := snapshotter.StartOrdinal(sts)
	for i := range snapshotter.Replicas(sts) {
		pod := fmt.Sprintf("%s-%d", sts.Name, start+i)
		progress(fmt.Sprintf("Checking %s: %s...", pod, c.says))
		if err := v.check(ctx, sts, pod, c); err != nil {
			return false, fmt.Sprintf("%s: pod %s: %v", c.says, pod, err)
		}
	}
	return true, c.says
}

// check runs the check in one pod until it passes, or returns its last failure.
func (v *Verifier) check(ctx context.Context, sts *appsv1.StatefulSet, name string, c check) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, v.retry(), true, func(ctx context.Context) (bool, error) {
		var pod corev1.Pod
		if err := v.Client.Get(ctx, types.NamespacedName{Namespace: sts.Namespace, Name: name}, &pod); err != nil {
			last = err
			return false, nil
		}
		container := c.container
		if container == "" {
			container = policy.DefaultHookContainer(pod.Annotations, &pod.Spec, sts)
		}
		stdout, stderr, err := v.Exec.Exec(ctx, sts.Namespace, name, container, c.argv)
		switch {
		case err == nil:
			return true, nil
		case ctx.Err() == nil:
			last = fmt.Errorf("%w: %s", err, lastLines(stderr, stdout))
		case last == nil:
			// A run cut short by the deadline tells nothing of the check
			// (the error is the connection's, e.g. an i/o timeout); with no
			// failure before it, what is known is that none finished.
			last = fmt.Errorf("no run of the check finished within %s (snapgate verify --timeout gives it longer): %w", v.timeout(), err)
		}
		return false, nil
	})
	if err != nil && last != nil {
		return last
	}
	return err
}

// waitReady waits on a watch until every replica of sts is Ready.
func (v *Verifier) waitReady(ctx context.Context, sts *appsv1.StatefulSet) error {
	api := v.Kube.AppsV1().StatefulSets(sts.Namespace)
	byName := fields.OneTermEqualSelector("metadata.name", sts.Name).String()
	lw := &toolscache.ListWatch{
		ListFunc: func(o metav1.ListOptions) (runtime.Object, error) {
			o.FieldSelector = byName
			return api.List(ctx, o)
		},
		WatchFunc: func(o metav1.ListOptions) (watch.Interface, error) {
			o.FieldSelector = byName
			return api.Watch(ctx, o)
		},
	}
	want := snapshotter.Replicas(sts)
	_, err := watchtools.UntilWithSync(ctx, lw, &appsv1.StatefulSet{}, nil, func(e watch.Event) (bool, error) {
		s, ok := e.Object.(*appsv1.StatefulSet)
		if !ok || e.Type == watch.Deleted {
			return false, errors.New("the scratch StatefulSet was deleted")
		}
		return s.Status.ReadyReplicas >= want, nil
	})
	return err
}

// podStates says why the scratch pods are not Ready, as kubectl get pods would.
func (v *Verifier) podStates(ctx context.Context, sts *appsv1.StatefulSet) string {
	var pods corev1.PodList
	if err := v.Client.List(ctx, &pods, client.InNamespace(sts.Namespace), client.MatchingLabels(sts.Spec.Selector.MatchLabels)); err != nil {
		return "its pods cannot be read: " + err.Error()
	}
	if len(pods.Items) == 0 {
		return "no pod was created (kubectl describe statefulset shows why)"
	}
	var states []string
	for _, p := range pods.Items {
		state := string(p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			switch {
			case cs.State.Waiting != nil:
				state += fmt.Sprintf(", %s %s", cs.Name, cs.State.Waiting.Reason)
			case cs.State.Terminated != nil:
				state += fmt.Sprintf(", %s exited %d", cs.Name, cs.State.Terminated.ExitCode)
			}
			if cs.RestartCount > 0 {
				state += fmt.Sprintf(", %s restarted %d times", cs.Name, cs.RestartCount)
			}
		}
		states = append(states, p.Name+" "+state)
	}
	return strings.Join(states, "; ")
}

// record marks every snapshot of the set with the outcome, and tells it.
func (v *Verifier) record(ctx context.Context, live *appsv1.StatefulSet, snaps []snapv1.VolumeSnapshot, res Result) {
	outcome := snapshotter.VerifyFailed
	if res.Passed {
		outcome = snapshotter.VerifyPassed
	}
	v.Metrics.observe(outcome)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		snapshotter.AnnotationVerified: outcome, snapshotter.AnnotationVerifiedAt: res.At.Format(time.RFC3339),
		snapshotter.AnnotationVerifiedHow: truncate(res.How, 1024),
	}}})
	for i := range snaps {
		if err := v.Client.Patch(ctx, &snaps[i], client.RawPatch(types.MergePatchType, patch)); err != nil && !apierrors.IsNotFound(err) {
			log.FromContext(ctx).Error(err, "Recording the verify on a snapshot", "snapshot", snaps[i].Name)
		}
	}
	if v.Events == nil {
		return
	}
	var regarding runtime.Object = &snaps[0]
	if live != nil {
		regarding = live
	}
	if res.Passed {
		v.Events.Eventf(regarding, &snaps[0], corev1.EventTypeNormal, "SetVerified", "Verify",
			"Set %s restores: restored as %s, %s", res.Set, res.Scratch.Name, res.How)
		return
	}
	v.Events.Eventf(regarding, &snaps[0], corev1.EventTypeWarning, "SetVerifyFailed", "Verify",
		"Set %s did not verify: restored as %s, %s. Run `snapgate restore set %s --into NAME` to look at it", res.Set, res.Scratch.Name, truncate(res.How, 512), res.Set)
}

// deleteScratch deletes the scratch copy, even when ctx has ended.
func (v *Verifier) deleteScratch(ctx context.Context, cp *rollback.Copy, progress func(string)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := restore.Delete(ctx, v.Client, cp); err != nil {
		log.FromContext(ctx).Error(err, "Deleting a verify's scratch copy", "statefulset", cp.StatefulSet.Name)
		progress(fmt.Sprintf("The scratch copy was not all deleted (%v): %s", err, restore.Cleanup(cp)))
		return
	}
	progress(fmt.Sprintf("Deleted the scratch %s.", cp))
}

// scratchName is a StatefulSet name of its own for each verify of set, short
// enough for its pods' controller-revision-hash label (52 characters).
func scratchName(set string, at time.Time) string {
	sum := sha256.Sum256([]byte(set + "\x00" + at.UTC().Format(time.RFC3339Nano)))
	return strings.TrimRight(truncate(set, 45), "-") + "-v" + hex.EncodeToString(sum[:])[:5]
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// lastLines is the end of what a failed check printed, stderr first.
func lastLines(stderr, stdout []byte) string {
	out := strings.TrimSpace(string(stderr))
	if out == "" {
		out = strings.TrimSpace(string(stdout))
	}
	if len(out) > 300 {
		out = "..." + out[len(out)-300:]
	}
	return out
}

func withLabel(labels map[string]string, k, v string) map[string]string {
	out := map[string]string{k: v}
	for key, val := range labels {
		out[key] = val
	}
	return out
}

func (v *Verifier) timeout() time.Duration {
	if v.Timeout > 0 {
		return v.Timeout
	}
	return DefaultTimeout
}

func (v *Verifier) retry() time.Duration {
	if v.Retry > 0 {
		return v.Retry
	}
	return DefaultRetry
}

func (v *Verifier) now() time.Time {
	if v.Clock != nil {
		return v.Clock.Now()
	}
	return time.Now()
}

// Metrics are the verify's Prometheus metrics.
type Metrics struct {
	outcomes *prometheus.CounterVec
}

// NewMetrics registers the verify's metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "snapgate_verifications_total",
		Help: "Snapshot sets verified (restored as a scratch StatefulSet and checked), by outcome: passed or failed.",
	}, []string{"outcome"})}
	if err := reg.Register(m.outcomes); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Metrics) observe(outcome string) {
	if m != nil {
		m.outcomes.WithLabelValues(outcome).Inc()
	}
}
