package snapshotter

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 5s")
}

// recordingHooks logs what the engine asked of the hooks, and what it saw of
// the set when it did.
type recordingHooks struct {
	mu      sync.Mutex
	calls   []string
	quiesce error
	thawCtx error
	// notRunning is what Quiesce reports of pods it gave no hooks.
	notRunning []string
	// thawErr is what the thaw returns.
	thawErr  error
	progress func() Progress
	// onQuiesce and onThaw, when set, run as the pre- and post-hooks would.
	onQuiesce, onThaw func()
}

func (h *recordingHooks) Quiesce(ctx context.Context, _ *Plan) (Quiesced, error) {
	h.mu.Lock()
	h.calls = append(h.calls, "quiesce")
	h.mu.Unlock()
	if h.onQuiesce != nil {
		h.onQuiesce()
	}
	return Quiesced{Thaw: func(tctx context.Context) error {
		if h.onThaw != nil {
			h.onThaw()
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		h.thawCtx = tctx.Err()
		p := h.progress()
		h.calls = append(h.calls, "thaw after "+strconv.Itoa(p.Cut)+" cut")
		return h.thawErr
	}, Pods: []string{"pg-0", "pg-1"}, NotRunning: h.notRunning}, h.quiesce
}

func (h *recordingHooks) log() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.calls, ", ")
}

type harness struct {
	engine *Engine
	client client.WithWatch
	plan   *Plan
	hooks  *recordingHooks
}

func newHarness(t *testing.T, funcs interceptor.Funcs, objs ...client.Object) *harness {
	t.Helper()
	objs = append(objs, volumes("data-pg-0", "data-pg-1")...)
	objs = append(objs, class("hostpath", driver, true))
	c := fake.NewClientBuilder().WithScheme(scheme()).WithObjects(objs...).WithInterceptorFuncs(funcs).Build()
	plan, err := PlanSet(context.Background(), c, Change{Reason: policy.ReasonTemplate, Old: testStatefulSet(2, "data"), NewReplicas: 2, UserInfo: authenticationv1.UserInfo{Username: "alice"}},
		policy.Policy{WaitFor: policy.WaitReady})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{client: c, plan: plan, hooks: &recordingHooks{}}
	h.engine = &Engine{Client: c, Reader: c, Snapshots: c, Changes: NewTracker(), Hooks: h.hooks, ThawTimeout: time.Second}
	h.hooks.progress = func() Progress { p, _ := h.engine.progress(context.Background(), plan); return p }
	return h
}

// setStatus plays the snapshot controller: it updates every snapshot of the set
// and wakes the waiters, as a watch event would.
func (h *harness) setStatus(t *testing.T, mutate func(*snapv1.VolumeSnapshotStatus)) {
	t.Helper()
	var list snapv1.VolumeSnapshotList
	if err := h.client.List(context.Background(), &list, client.MatchingLabels{LabelSet: h.plan.Set}); err != nil {
		t.Fatal(err)
	}
	for i := range list.Items {
		vs := &list.Items[i]
		if vs.Status == nil {
			vs.Status = &snapv1.VolumeSnapshotStatus{}
		}
		mutate(vs.Status)
		if err := h.client.Update(context.Background(), vs); err != nil {
			t.Fatal(err)
		}
	}
	h.engine.Changes.Notify()
}

func (h *harness) waitForSnapshots(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if p, _ := h.engine.progress(context.Background(), h.plan); p.Found == n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("the engine did not create %d snapshots", n)
}

func cut(s *snapv1.VolumeSnapshotStatus) { s.CreationTime = &metav1.Time{Time: time.Now()} }
func ready(s *snapv1.VolumeSnapshotStatus) {
	yes := true
	s.ReadyToUse = &yes
}

type result struct {
	prog Progress
	err  error
}

func (h *harness) take(ctx context.Context) chan result {
	done := make(chan result, 1)
	go func() {
		p, err := h.engine.Take(ctx, h.plan)
		done <- result{p, err}
	}()
	return done
}

func TestTakeQuiescesCreatesThawsAfterTheCutThenWaitsForReady(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	done := h.take(context.Background())

	h.waitForSnapshots(t, 2)
	h.setStatus(t, cut)
	select {
	case r := <-done:
		t.Fatalf("Take returned %+v before the set was ready", r)
	case <-time.After(50 * time.Millisecond):
	}
	if got := h.hooks.log(); got != "quiesce, thaw after 2 cut" {
		t.Fatalf("hooks = %q, want a quiesce, then a thaw once both snapshots were cut", got)
	}
	h.setStatus(t, ready)
	r := <-done
	if r.err != nil || r.prog.Ready != 2 || r.prog.Total != 2 {
		t.Fatalf("Take = %+v, %v; want 2/2 ready", r.prog, r.err)
	}

	var vs snapv1.VolumeSnapshot
	if err := h.client.Get(context.Background(), client.ObjectKey{Namespace: "db", Name: h.plan.Snapshots[1].Name}, &vs); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{LabelSet: h.plan.Set, LabelStatefulSet: "pg", LabelOrdinal: "1", LabelClaim: "data", LabelManagedBy: "snapgate"} {
		if vs.Labels[k] != want {
			t.Errorf("label %s = %q, want %q", k, vs.Labels[k], want)
		}
	}
	for k, want := range map[string]string{AnnotationReason: "template", AnnotationReplicasBefore: "2", AnnotationRevision: "pg-abc", AnnotationRequestedBy: "alice"} {
		if vs.Annotations[k] != want {
			t.Errorf("annotation %s = %q, want %q", k, vs.Annotations[k], want)
		}
	}
	if !strings.Contains(vs.Annotations[AnnotationPVCSpec], "pv-data-pg-1") {
		t.Errorf("snapshot lacks the PVC spec a restore needs: %v", vs.Annotations)
	}
	// The old template is on the set's first snapshot, its digest on the others.
	var set snapv1.VolumeSnapshotList
	if err := h.client.List(context.Background(), &set, client.InNamespace("db"), client.MatchingLabels{LabelSet: h.plan.Set}); err != nil {
		t.Fatal(err)
	}
	tmpl, carrier, err := RecordedTemplate(h.plan.Set, set.Items)
	if err != nil || !strings.Contains(tmpl, "postgres:16") || carrier.Name != h.plan.Snapshots[0].Name {
		t.Errorf("RecordedTemplate = %q on %v, %v; want the old template on %s", tmpl, carrier, err, h.plan.Snapshots[0].Name)
	}
	if _, ok := vs.Annotations[AnnotationPodTemplate]; ok || vs.Annotations[AnnotationPodTemplateDigest] != TemplateDigest(tmpl) {
		t.Errorf("the second snapshot carries %v; want only the template's digest", vs.Annotations)
	}
}

// TestTheFreezeWindowIsFromThePreHooksStartToThePostHooksEnd: the window a
// user's writes wait through is reported and counted, once the pods are thawed.
func TestTheFreezeWindowIsFromThePreHooksStartToThePostHooksEnd(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC))
	h.engine.Clock = clk
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	h.engine.Metrics = m
	h.hooks.onQuiesce = func() { clk.Step(300 * time.Millisecond) }
	h.hooks.onThaw = func() { clk.Step(100 * time.Millisecond) }
	done := h.take(context.Background())
	h.waitForSnapshots(t, 2)
	clk.Step(200 * time.Millisecond) // the cut
	h.setStatus(t, cut)
	frozen := func() *dto.Histogram { return histogram(t, m.frozen) }
	waitFor(t, func() bool { return frozen().GetSampleCount() > 0 })
	clk.Step(time.Second) // the upload, after the thaw: not in the window
	h.setStatus(t, ready)
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if h := r.prog.Hooks; h.Frozen != 600*time.Millisecond || h.PreHooks != 300*time.Millisecond || h.PostHooks != 100*time.Millisecond {
		t.Errorf("Frozen = %s, pre-hooks %s, post-hooks %s; want 600ms (pre-hooks, cut, post-hooks), 300ms, 100ms", h.Frozen, h.PreHooks, h.PostHooks)
	}
	if got := frozen(); got.GetSampleCount() != 1 || got.GetSampleSum() != 0.6 {
		t.Errorf("snapgate_freeze_window_seconds = %d samples, sum %v; want one of 0.6", got.GetSampleCount(), got.GetSampleSum())
	}
	for phase, want := range map[string]float64{"pre": 0.3, "post": 0.1} {
		if got := histogram(t, m.hookPhases.WithLabelValues(phase).(prometheus.Histogram)); got.GetSampleCount() != 1 || got.GetSampleSum() != want {
			t.Errorf("snapgate_hook_phase_seconds{phase=%q} = %d samples, sum %v; want one of %v", phase, got.GetSampleCount(), got.GetSampleSum(), want)
		}
	}
}

// histogram is what h has observed.
func histogram(t *testing.T, h prometheus.Histogram) *dto.Histogram {
	t.Helper()
	var got dto.Metric
	if err := h.Write(&got); err != nil {
		t.Fatal(err)
	}
	return got.Histogram
}

func TestTakeOfAnExistingSetOnlyWaits(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	if err := h.engine.CreateSet(context.Background(), h.plan); err != nil {
		t.Fatal(err)
	}
	h.setStatus(t, func(s *snapv1.VolumeSnapshotStatus) { cut(s); ready(s) })
	r := <-h.take(context.Background())
	if r.err != nil || r.prog.Ready != 2 {
		t.Fatalf("Take = %+v, %v", r.prog, r.err)
	}
	if got := h.hooks.log(); got != "" {
		t.Fatalf("a retried request ran hooks again: %q", got)
	}
}

func TestTakeEndsAtOnceOnASnapshotError(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	done := h.take(context.Background())
	h.waitForSnapshots(t, 2)
	msg := "quota exceeded"
	h.setStatus(t, func(s *snapv1.VolumeSnapshotStatus) { s.Error = &snapv1.VolumeSnapshotError{Message: &msg} })
	r := <-done
	var se *SnapshotError
	if !errors.As(r.err, &se) || se.Message != msg || !strings.HasPrefix(se.PVC, "data-pg-") {
		t.Fatalf("err = %v, want the driver's message for a PVC", r.err)
	}
	if got := h.hooks.log(); got != "quiesce, thaw after 0 cut" {
		t.Fatalf("hooks = %q, want the thaw to run after a failure too", got)
	}
}

func TestThawRunsOnItsOwnContextWhenTheRequestEnds(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	r := <-h.take(ctx)
	if !errors.Is(r.err, context.DeadlineExceeded) || r.prog.Found != 2 || r.prog.Cut != 0 {
		t.Fatalf("Take = %+v, %v; want the progress so far and the deadline", r.prog, r.err)
	}
	if got := h.hooks.log(); got != "quiesce, thaw after 0 cut" {
		t.Fatalf("hooks = %q", got)
	}
	if h.hooks.thawCtx != nil {
		t.Fatalf("thaw ran on a dead context (%v): the post-hooks would never reach the pods", h.hooks.thawCtx)
	}
}

func TestThawRunsWhenQuiesceOrCreateFails(t *testing.T) {
	t.Run("a failed quiesce", func(t *testing.T) {
		h := newHarness(t, interceptor.Funcs{})
		h.hooks.quiesce = errors.New("pre-hook exited 1 in pg-1")
		r := <-h.take(context.Background())
		if r.err == nil || !strings.Contains(r.err.Error(), "pre-hook exited 1 in pg-1") {
			t.Fatalf("err = %v", r.err)
		}
		if got := h.hooks.log(); got != "quiesce, thaw after 0 cut" {
			t.Fatalf("hooks = %q, want a thaw after a failed quiesce", got)
		}
		if p, _ := h.engine.progress(context.Background(), h.plan); p.Found != 0 {
			t.Fatalf("snapshots were created after the quiesce failed")
		}
	})
	t.Run("a failed create", func(t *testing.T) {
		h := newHarness(t, interceptor.Funcs{Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if strings.Contains(obj.GetName(), "data-pg-1") {
				return errors.New("etcd is unhappy")
			}
			return c.Create(ctx, obj, opts...)
		}})
		r := <-h.take(context.Background())
		if r.err == nil || !strings.Contains(r.err.Error(), "etcd is unhappy") {
			t.Fatalf("err = %v", r.err)
		}
		if got := h.hooks.log(); !strings.HasPrefix(got, "quiesce, thaw") {
			t.Fatalf("hooks = %q, want a thaw after a failed create", got)
		}
	})
}

func TestCreateSetNeverOverwritesAForeignSnapshot(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	pvc := "data-pg-0"
	foreign := &snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: h.plan.Snapshots[0].Name},
		Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
	}
	if err := h.client.Create(context.Background(), foreign); err != nil {
		t.Fatal(err)
	}
	err := h.engine.CreateSet(context.Background(), h.plan)
	if err == nil || !strings.Contains(err.Error(), "already exists and is not snapgate's snapshot") {
		t.Fatalf("err = %v, want a refusal to adopt the foreign snapshot", err)
	}
	// Creating the same set twice is fine: that is what a retry does.
	h2 := newHarness(t, interceptor.Funcs{})
	for i := 0; i < 2; i++ {
		if err := h2.engine.CreateSet(context.Background(), h2.plan); err != nil {
			t.Fatalf("create #%d: %v", i+1, err)
		}
	}
}

func TestPlanOfAnExistingSetReadsNothingFromTheAPIServer(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	if err := h.engine.CreateSet(context.Background(), h.plan); err != nil {
		t.Fatal(err)
	}
	reads := 0
	h.engine.Reader = interceptor.NewClient(h.client, interceptor.Funcs{
		Get: func(ctx context.Context, c client.WithWatch, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
			reads++
			return c.Get(ctx, key, obj, opts...)
		},
		List: func(ctx context.Context, c client.WithWatch, list client.ObjectList, opts ...client.ListOption) error {
			reads++
			return c.List(ctx, list, opts...)
		},
	})
	plan, err := h.engine.Plan(context.Background(), h.plan.Change, h.plan.Policy)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Set != h.plan.Set || len(plan.Snapshots) != 2 {
		t.Fatalf("plan = %s with %d snapshots, want the existing set %s", plan.Set, len(plan.Snapshots), h.plan.Set)
	}
	if reads != 0 {
		t.Fatalf("planning an existing set made %d API reads; a retried request must be cheap", reads)
	}
}

func TestAConflictReportedAsASnapshotErrorDoesNotEndTheWait(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	done := h.take(context.Background())
	h.waitForSnapshots(t, 2)
	msg := "Failed to create snapshot content with error snapshot controller failed to update data-pg-0 on API server: " +
		"Operation cannot be fulfilled on persistentvolumeclaims \"data-pg-0\": the object has been modified; please apply your changes to the latest version and try again"
	h.setStatus(t, func(s *snapv1.VolumeSnapshotStatus) { s.Error = &snapv1.VolumeSnapshotError{Message: &msg} })
	select {
	case r := <-done:
		t.Fatalf("Take ended on a transient conflict: %+v, %v", r.prog, r.err)
	case <-time.After(50 * time.Millisecond):
	}
	h.setStatus(t, func(s *snapv1.VolumeSnapshotStatus) { s.Error = nil; cut(s); ready(s) })
	if r := <-done; r.err != nil || r.prog.Ready != 2 {
		t.Fatalf("Take = %+v, %v; want the set once the controller recovered", r.prog, r.err)
	}
}

func TestASnapshotLostAfterAFastPlanIsCreatedAgainWithItsClass(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	if err := h.engine.CreateSet(context.Background(), h.plan); err != nil {
		t.Fatal(err)
	}
	plan, err := h.engine.Plan(context.Background(), h.plan.Change, h.plan.Policy)
	if err != nil || plan.checked {
		t.Fatalf("plan = %+v, %v; want the read-free plan of an existing set", plan, err)
	}
	lost := &snapv1.VolumeSnapshot{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: h.plan.Snapshots[1].Name}}
	if err := h.client.Delete(context.Background(), lost); err != nil {
		t.Fatal(err)
	}
	h.plan = plan
	done := h.take(context.Background())
	h.waitForSnapshots(t, 2)
	h.setStatus(t, func(s *snapv1.VolumeSnapshotStatus) { cut(s); ready(s) })
	if r := <-done; r.err != nil {
		t.Fatal(r.err)
	}
	var again snapv1.VolumeSnapshot
	if err := h.client.Get(context.Background(), client.ObjectKeyFromObject(lost), &again); err != nil {
		t.Fatal(err)
	}
	if c := again.Spec.VolumeSnapshotClassName; c == nil || *c != "hostpath" {
		t.Fatalf("re-created snapshot's class = %v, want hostpath", c)
	}
}

func TestTakeReportsPodsWithoutHooksAndRecordsWhatWasLeftOut(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	h.hooks.notRunning = []string{"pod pg-1 (it is Pending)"}
	h.plan.LeftOut = []LeftOut{{PVC: "data-pg-2", Ordinal: 2, Why: "does not exist (it holds no data)"}}
	done := h.take(context.Background())
	h.waitForSnapshots(t, 2)
	h.setStatus(t, cut)
	h.setStatus(t, ready)
	r := <-done
	if r.err != nil || len(r.prog.Hooks.NotRunning) != 1 || r.prog.Hooks.NotRunning[0] != "pod pg-1 (it is Pending)" {
		t.Fatalf("Take = %+v, %v; want the pod that got no hooks reported", r.prog, r.err)
	}
	var vs snapv1.VolumeSnapshot
	if err := h.client.Get(context.Background(), client.ObjectKey{Namespace: "db", Name: h.plan.Snapshots[0].Name}, &vs); err != nil {
		t.Fatal(err)
	}
	if got := vs.Annotations[AnnotationLeftOut]; got != "data-pg-2" {
		t.Fatalf("left-out annotation = %q; want data-pg-2, for a rollback to leave it as it is", got)
	}
}

func TestAPostHookThatFailsAfterTheCutLeavesTheSetGood(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	h.hooks.thawErr = &ThawError{Pods: []string{"pg-1"}, Err: errors.New("UNLOCK TABLES: lost connection")}
	done := h.take(context.Background())
	h.waitForSnapshots(t, 2)
	h.setStatus(t, cut)
	h.setStatus(t, ready)
	r := <-done
	if r.err != nil || r.prog.Ready != 2 {
		t.Fatalf("Take = %+v, %v; want the set taken: every snapshot was cut before the post-hook failed", r.prog, r.err)
	}
	if tf := r.prog.Hooks.ThawFailed; tf == nil || len(tf.Pods) != 1 || tf.Pods[0] != "pg-1" {
		t.Fatalf("thaw failure = %+v; want pg-1 named", r.prog.Hooks.ThawFailed)
	}
	if got := r.prog.Hooks.Thawed(); len(got) != 1 || got[0] != "pg-0" {
		t.Fatalf("thawed = %v; want pg-0", got)
	}
}

func TestAFailedQuiesceReportsWhichPodsWereNotThawed(t *testing.T) {
	h := newHarness(t, interceptor.Funcs{})
	h.hooks.quiesce = errors.New("pre-hook exited 1 in pg-1")
	h.hooks.thawErr = errors.New("post-hook exited 1 in both")
	r := <-h.take(context.Background())
	var qe *QuiesceError
	if !errors.As(r.err, &qe) {
		t.Fatalf("err = %v; want the quiesce error", r.err)
	}
	if tf := r.prog.Hooks.ThawFailed; tf == nil || len(tf.Pods) != 2 || len(r.prog.Hooks.Thawed()) != 0 {
		t.Fatalf("hooks = %+v; want both pods reported as not thawed", r.prog.Hooks)
	}
}
