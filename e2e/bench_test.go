//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/e2e/framework"
)

// benchDelays are the fixed delays of the benchmarks' snapshot class, in the
// hostpath driver: a cut and an upload of known length, the same with snapgate
// and without, so that what the two figures differ by is snapgate's own share
// and not the pipeline's swings between runs.
var benchDelays = map[string]string{"cutDelay": "200ms", "readyDelay": "500ms"}

// benchSet creates a guarded StatefulSet of replicas kwok pods on class, all
// started at once, whose template changes replace no pod (OnDelete): the
// benchmarks time the admission, not a rollout.
func benchSet(b *testing.B, c *framework.Cluster, ns, name string, replicas int, class string) {
	b.Helper()
	c.Apply(b, ns, framework.GuardedSet{Name: name, Replicas: replicas,
		Annotations: map[string]string{"snapgate.io/snapshot-class": class, "snapgate.io/keep": strconv.Itoa(benchKeep)},
		PodSpec:     "      containers:\n      - name: db\n        image: postgres:16\n",
		Spec:        "  updateStrategy: {type: OnDelete}\n"}.YAML())
	c.MustKubectl(b, "-n", ns, "wait", "--for=jsonpath={.status.readyReplicas}="+strconv.Itoa(replicas), "statefulset/"+name, "--timeout=5m")
	// kwok's pods are ready before their PVCs are bound, and snapgate rightly
	// leaves a PVC that is not bound out of a set: seen as a first round at
	// 100 replicas that snapshotted 99.
	wait := []string{"-n", ns, "wait", "--for=jsonpath={.status.phase}=Bound", "--timeout=5m"}
	for _, pvc := range pvcsOf(name, replicas) {
		wait = append(wait, "pvc/"+pvc)
	}
	c.MustKubectl(b, wait...)
}

// benchKeep is the sets each benchmark StatefulSet keeps: snapgate prunes
// the older ones after every round, and idle waits for that.
const benchKeep = 2

// idle waits, untimed, until the pipeline has nothing left from the rounds
// before: the baseline's snapshots deleted, snapgate's prune down to keep sets
// a StatefulSet, no snapshot terminating. Then a second more, for the
// controllers' own bookkeeping. Without it, deletes of 100 snapshots ran
// through the sidecars' workers beside the next round's creates.
func idle(b *testing.B, c *framework.Cluster, ns string, keep int) {
	b.Helper()
	b.StopTimer()
	defer b.StartTimer()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := c.Ctrl.DeleteAllOf(ctx, &snapv1.VolumeSnapshot{}, client.InNamespace(ns), client.HasLabels{"bench/round"}); err != nil {
		b.Fatalf("delete the baseline's snapshots: %v", err)
	}
	for {
		var list snapv1.VolumeSnapshotList
		if err := c.Ctrl.List(ctx, &list, client.InNamespace(ns)); err != nil {
			b.Fatalf("list snapshots: %v", err)
		}
		busy := ""
		sets := map[string]map[string]bool{}
		for _, vs := range list.Items {
			if vs.DeletionTimestamp != nil || vs.Labels["bench/round"] != "" {
				busy = "snapshot " + vs.Name + " is being deleted"
				break
			}
			sts := vs.Labels["snapgate.io/statefulset"]
			if sets[sts] == nil {
				sets[sts] = map[string]bool{}
			}
			if sets[sts][vs.Labels["snapgate.io/set"]] = true; len(sets[sts]) > keep {
				busy = "statefulset " + sts + " is not pruned yet"
				break
			}
		}
		if busy == "" {
			break
		}
		select {
		case <-ctx.Done():
			b.Fatalf("the pipeline is not idle after 5m: %s", busy)
		case <-time.After(200 * time.Millisecond):
		}
	}
	time.Sleep(time.Second)
}

// report prints one figure as a `name value unit` line and keeps it in the
// stack's bench.txt, from which `make bench` prints its table.
func report(b *testing.B, c *framework.Cluster, name string, value float64, unit string) {
	b.Helper()
	line := fmt.Sprintf("%s %s %s\n", name, strconv.FormatFloat(value, 'f', -1, 64), unit)
	fmt.Print(line)
	f, err := os.OpenFile(filepath.Join(c.Dir, "bench.txt"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkTimeToAdmit compares, in the same run, how long a guarded template
// change takes to be admitted with what the CSI pipeline itself needs to cut and
// ready the same snapshots: the baseline creates the VolumeSnapshots directly, in
// parallel, on the same class, and waits for all of them to be readyToUse.
// Rounds alternate the two. Run with -benchtime=Nx for N rounds; it prints one
// line per replica count. Every round at 100 replicas is one webhook call
// inside the budget of `make run` (a round denied fails the benchmark).
func BenchmarkTimeToAdmit(b *testing.B) {
	for _, replicas := range []int{1, 3, 10, 30, 100} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			c := framework.Connect(b)
			ns := c.KwokNamespace(b)
			name := "bench"
			class := c.SnapshotClassForTest(b, ns, "bench", benchDelays)
			benchSet(b, c, ns, name, replicas, class)
			ctx := context.Background()

			var withGate, baseline, withRecord []time.Duration
			// When the last snapshot was cut and when the last was ready, on
			// each side: whether what snapgate adds is before the cut
			// (planning, creating) or after it (seeing the set ready).
			var gateCut, gateReady, baseCut []time.Duration
			round := 0
			for b.Loop() {
				round++
				// Both sides start on an idle pipeline, so that neither is
				// measured while the controllers finish the other's work.
				settle := func() { idle(b, c, ns, benchKeep) }
				measureBaseline := func() {
					apiCPU := apiServerCPU(b, c)
					cut, ready := snapshotTimes(b, c, ns, class, pvcsOf(name, replicas), fmt.Sprintf("baseline-%d", round), nil)
					apiCPU = apiServerCPU(b, c) - apiCPU
					baseline, baseCut = append(baseline, ready), append(baseCut, cut)
					fmt.Printf("round %d replicas=%d: the baseline cut at %d ms, ready at %d ms; CPU: the API server %d ms\n",
						round, replicas, cut.Milliseconds(), ready.Milliseconds(), apiCPU.Milliseconds())
					settle()
				}
				measureGate := func() {
					before, cpu, apiCPU := readSetMetrics(b, c), snapgateCPU(b, c), apiServerCPU(b, c)
					seen := watchNewSet(b, c, ns, name, replicas)
					withGate = append(withGate, upgrade(b, c, ctx, ns, name, round))
					cpu, apiCPU = snapgateCPU(b, c)-cpu, apiServerCPU(b, c)-apiCPU
					cut, ready := readSetMetrics(b, c).since(b, before)
					gateCut, gateReady = append(gateCut, cut), append(gateReady, ready)
					watched := seen()
					fmt.Printf("round %d replicas=%d: snapgate's set cut at %d ms, ready at %d ms (the bench's watch: %d ms); CPU: snapgate %d ms, the API server %d ms\n",
						round, replicas, cut.Milliseconds(), ready.Milliseconds(), watched.Milliseconds(), cpu.Milliseconds(), apiCPU.Milliseconds())
					settle()
				}
				// The baseline again, each snapshot carrying the record
				// snapgate writes on its own (the pod template, the PVC spec):
				// what the pipeline takes to carry it is snapgate's share too,
				// but this tells it apart from snapgate's own work.
				measureRecord := func() {
					withRecord = append(withRecord, snapshotsLike(b, c, ns, class, pvcsOf(name, replicas), fmt.Sprintf("record-%d", round), recordOf(b, c, ns, name)))
					settle()
				}
				if round%2 == 0 {
					measureRecord()
					measureBaseline()
					measureGate()
				} else {
					measureGate()
					measureBaseline()
					measureRecord()
				}
			}
			g, base := median(withGate), median(baseline)
			report(b, c, fmt.Sprintf("admit.replicas=%d.baseline_record", replicas), float64(median(withRecord).Milliseconds()), "ms")
			b.ReportMetric(float64(g.Milliseconds()), "snapgate_ms")
			b.ReportMetric(float64(base.Milliseconds()), "baseline_ms")
			fmt.Printf("replicas=%d snapgate_ms=%d baseline_ms=%d ratio=%.2f rounds=%d\n",
				replicas, g.Milliseconds(), base.Milliseconds(), float64(g)/float64(base), len(withGate))
			report(b, c, fmt.Sprintf("admit.replicas=%d.snapgate", replicas), float64(g.Milliseconds()), "ms")
			report(b, c, fmt.Sprintf("admit.replicas=%d.baseline", replicas), float64(base.Milliseconds()), "ms")
			fmt.Printf("replicas=%d snapgate_cut_ms=%d snapgate_ready_ms=%d baseline_cut_ms=%d baseline_ready_ms=%d\n", replicas,
				median(gateCut).Milliseconds(), median(gateReady).Milliseconds(), median(baseCut).Milliseconds(), base.Milliseconds())
			report(b, c, fmt.Sprintf("admit.replicas=%d.snapgate_cut", replicas), float64(median(gateCut).Milliseconds()), "ms")
			report(b, c, fmt.Sprintf("admit.replicas=%d.snapgate_ready", replicas), float64(median(gateReady).Milliseconds()), "ms")
			report(b, c, fmt.Sprintf("admit.replicas=%d.baseline_cut", replicas), float64(median(baseCut).Milliseconds()), "ms")
		})
	}
}

// watchNewSet watches the snapshots of StatefulSet name from now on, and
// returns a function that waits until replicas new ones are ready and says
// how long after the watch began that was, as the bench's own watch saw it:
// beside snapgate's metrics, this tells the pipeline being late from snapgate
// seeing it late.
func watchNewSet(b *testing.B, c *framework.Cluster, ns, name string, replicas int) func() time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	selector := client.MatchingLabels{"snapgate.io/statefulset": name}
	var list snapv1.VolumeSnapshotList
	if err := c.Ctrl.List(ctx, &list, client.InNamespace(ns), selector); err != nil {
		b.Fatal(err)
	}
	old := map[string]bool{}
	for _, vs := range list.Items {
		old[vs.Name] = true
	}
	start := time.Now()
	done := make(chan error, 1)
	var took time.Duration
	go func() {
		ready := map[string]bool{}
		done <- watchUntil(ctx, c, ns, selector, list.ResourceVersion, func(vs *snapv1.VolumeSnapshot) bool {
			if old[vs.Name] || vs.Status == nil || vs.Status.ReadyToUse == nil || !*vs.Status.ReadyToUse {
				return false
			}
			if ready[vs.Name] = true; len(ready) == replicas {
				took = time.Since(start)
				return true
			}
			return false
		})
	}()
	return func() time.Duration {
		defer cancel()
		if err := <-done; err != nil {
			b.Fatalf("the bench's watch of the new set of %s: %v", name, err)
		}
		return took
	}
}

// setMetrics are the sums and count of snapgate's sets' cut and ready times
// (from the start of their taking), from its metrics endpoint.
type setMetrics struct{ cutSum, readySum, sets float64 }

func readSetMetrics(b *testing.B, c *framework.Cluster) setMetrics {
	return setMetrics{
		cutSum:   c.MetricValue(b, "snapgate_snapshot_set_cut_seconds_sum"),
		readySum: c.MetricValue(b, "snapgate_snapshot_set_ready_seconds_sum"),
		sets:     c.MetricValue(b, "snapgate_snapshot_set_cut_seconds_count"),
	}
}

// since is the one set taken since before: when it was cut, when ready.
func (m setMetrics) since(b *testing.B, before setMetrics) (cut, ready time.Duration) {
	if n := m.sets - before.sets; n != 1 {
		b.Fatalf("%v sets taken for one upgrade; want 1", n)
	}
	return time.Duration((m.cutSum - before.cutSum) * float64(time.Second)), time.Duration((m.readySum - before.readySum) * float64(time.Second))
}

// BenchmarkFreezeWindow times how long the application is quiesced for a
// set: snapgate_freeze_window_seconds, from the start of the pre-hooks to the
// end of the post-hooks, against what it cannot be shorter than: the hooks
// themselves (snapgate_hook_phase_seconds, the pre-hooks and the post-hooks
// of the set's pods, each phase as long as its slowest pod) and the cut of the
// same snapshots created directly on the same class in the same round. What
// is left is snapgate's own share: creating the snapshots and seeing them cut.
// Real pods on the real node, each with a pre-hook and a post-hook of its own,
// for 1, 3 and 10 replicas.
func BenchmarkFreezeWindow(b *testing.B) {
	for _, replicas := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			c := framework.Connect(b)
			ns := c.Namespace(b)
			name := "frz"
			class := c.SnapshotClassForTest(b, ns, "bench", benchDelays)
			c.Apply(b, ns, framework.GuardedSet{Name: name, Replicas: replicas, Storage: "16Mi",
				Annotations: map[string]string{"snapgate.io/snapshot-class": class, "snapgate.io/keep": strconv.Itoa(benchKeep),
					"snapgate.io/pre-hook": `["sync"]`, "snapgate.io/post-hook": `["sync"]`},
				PodSpec: "      containers:\n      - name: app\n        image: busybox:1.36\n        command: " + framework.SleepingApp +
					"\n        volumeMounts: [{name: data, mountPath: /data}]\n",
				Spec: "  updateStrategy: {type: OnDelete}\n"}.YAML())
			c.MustKubectl(b, "-n", ns, "wait", "--for=jsonpath={.status.readyReplicas}="+strconv.Itoa(replicas), "statefulset/"+name, "--timeout=5m")
			ctx := context.Background()

			var windows, hooks, cuts, recordCuts []time.Duration
			round := 0
			for b.Loop() {
				round++
				measureGate := func() {
					before := readFreezeMetrics(b, c)
					upgrade(b, c, ctx, ns, name, round)
					d := readFreezeMetrics(b, c).since(before)
					if d.windows != 1 {
						b.Fatalf("round %d: %v freeze windows counted for one set; want 1", round, d.windows)
					}
					windows = append(windows, d.window)
					hooks = append(hooks, d.pre+d.post)
					idle(b, c, ns, benchKeep)
				}
				measureCut := func() {
					cut, _ := snapshotTimes(b, c, ns, class, pvcsOf(name, replicas), fmt.Sprintf("baseline-%d", round), nil)
					cuts = append(cuts, cut)
					idle(b, c, ns, benchKeep)
				}
				// Again with the record snapgate writes on each snapshot, as
				// in BenchmarkTimeToAdmit: the pipeline's share of carrying it.
				measureRecordCut := func() {
					cut, _ := snapshotTimes(b, c, ns, class, pvcsOf(name, replicas), fmt.Sprintf("record-%d", round), recordOf(b, c, ns, name))
					recordCuts = append(recordCuts, cut)
					idle(b, c, ns, benchKeep)
				}
				// As in BenchmarkTimeToAdmit, rounds alternate the order, so
				// that none of the three is always measured first or last; the
				// first round starts with the upgrade, whose set's record the
				// others copy.
				if round%2 == 0 {
					measureRecordCut()
					measureCut()
					measureGate()
				} else {
					measureGate()
					measureCut()
					measureRecordCut()
				}
			}
			w, h, cut := median(windows), median(hooks), median(cuts)
			fmt.Printf("replicas=%d freeze_ms=%d hooks_ms=%d cut_ms=%d cut_record_ms=%d rounds=%d\n", replicas, w.Milliseconds(), h.Milliseconds(), cut.Milliseconds(), median(recordCuts).Milliseconds(), round)
			report(b, c, fmt.Sprintf("freeze.replicas=%d.window", replicas), float64(w.Milliseconds()), "ms")
			report(b, c, fmt.Sprintf("freeze.replicas=%d.hooks", replicas), float64(h.Milliseconds()), "ms")
			report(b, c, fmt.Sprintf("freeze.replicas=%d.cut", replicas), float64(cut.Milliseconds()), "ms")
			report(b, c, fmt.Sprintf("freeze.replicas=%d.cut_record", replicas), float64(median(recordCuts).Milliseconds()), "ms")
		})
	}
}

// freezeMetrics are the sums and counts of snapgate's freeze window and hook
// phases, from its metrics endpoint.
type freezeMetrics struct {
	windowSum, windows, preSum, pres, postSum, posts float64
}

func readFreezeMetrics(b *testing.B, c *framework.Cluster) freezeMetrics {
	return freezeMetrics{
		windowSum: c.MetricValue(b, "snapgate_freeze_window_seconds_sum"),
		windows:   c.MetricValue(b, "snapgate_freeze_window_seconds_count"),
		preSum:    c.MetricValue(b, "snapgate_hook_phase_seconds_sum", `phase="pre"`),
		pres:      c.MetricValue(b, "snapgate_hook_phase_seconds_count", `phase="pre"`),
		postSum:   c.MetricValue(b, "snapgate_hook_phase_seconds_sum", `phase="post"`),
		posts:     c.MetricValue(b, "snapgate_hook_phase_seconds_count", `phase="post"`),
	}
}

// freezeRound is one round's freeze window and hook phases.
type freezeRound struct {
	windows           float64
	window, pre, post time.Duration
}

func (m freezeMetrics) since(before freezeMetrics) freezeRound {
	mean := func(sum, n float64) time.Duration {
		if n == 0 {
			return 0
		}
		return time.Duration(sum / n * float64(time.Second))
	}
	return freezeRound{
		windows: m.windows - before.windows,
		window:  mean(m.windowSum-before.windowSum, m.windows-before.windows),
		pre:     mean(m.preSum-before.preSum, m.pres-before.pres),
		post:    mean(m.postSum-before.postSum, m.posts-before.posts),
	}
}

// BenchmarkConcurrentUpgrades upgrades 50 guarded StatefulSets of 3 replicas
// at once, as a GitOps sync of many does: every upgrade must be admitted, each
// with one set of its own (none twice), and the last no later than the same
// 150 snapshots take when created directly, all at once, in the same round.
func BenchmarkConcurrentUpgrades(b *testing.B) {
	const sets, replicas = 50, 3
	c := framework.Connect(b)
	ns := c.KwokNamespace(b)
	class := c.SnapshotClassForTest(b, ns, "bench", benchDelays)
	ctx := context.Background()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 10)
	for i := range sets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			benchSet(b, c, ns, fmt.Sprintf("s%02d", i), replicas, class)
		}()
	}
	wg.Wait()
	var pvcs []string
	for i := range sets {
		pvcs = append(pvcs, pvcsOf(fmt.Sprintf("s%02d", i), replicas)...)
	}

	var admits, lasts, baselines []time.Duration
	round, duplicates := 0, 0
	for b.Loop() {
		round++
		baselines = append(baselines, snapshotDirectly(b, c, ns, class, pvcs, round))
		idle(b, c, ns, benchKeep)
		took := make([]time.Duration, sets)
		started := time.Now()
		for i := range sets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var err error
				if took[i], err = patchTemplate(ctx, c, ns, fmt.Sprintf("s%02d", i), round); err != nil {
					b.Errorf("round %d: %v", round, err)
				}
			}()
		}
		wg.Wait()
		admits = append(admits, took...)
		lasts = append(lasts, slices.Max(took))
		duplicates += newSets(b, c, ns, sets, started)
		idle(b, c, ns, benchKeep)
	}
	slices.Sort(admits)
	p50, p99 := admits[len(admits)/2], admits[(len(admits)*99)/100]
	last, base := median(lasts), median(baselines)
	fmt.Printf("concurrent=%d replicas=%d p50_ms=%d p99_ms=%d last_ms=%d baseline_ms=%d duplicates=%d rounds=%d\n",
		sets, replicas, p50.Milliseconds(), p99.Milliseconds(), last.Milliseconds(), base.Milliseconds(), duplicates, round)
	report(b, c, "concurrent50.p50", float64(p50.Milliseconds()), "ms")
	report(b, c, "concurrent50.p99", float64(p99.Milliseconds()), "ms")
	report(b, c, "concurrent50.last", float64(last.Milliseconds()), "ms")
	report(b, c, "concurrent50.baseline", float64(base.Milliseconds()), "ms")
	report(b, c, "concurrent50.duplicates", float64(duplicates), "sets")
}

// newSets checks that each of the sets StatefulSets s00... got exactly one set
// taken since started, and returns how many more than one there were.
func newSets(b *testing.B, c *framework.Cluster, ns string, sets int, started time.Time) int {
	b.Helper()
	var list snapv1.VolumeSnapshotList
	if err := c.Ctrl.List(context.Background(), &list, client.InNamespace(ns), client.HasLabels{"snapgate.io/set"}); err != nil {
		b.Fatal(err)
	}
	taken := map[string]map[string]bool{}
	for _, vs := range list.Items {
		at, err := time.Parse(time.RFC3339Nano, vs.Annotations["snapgate.io/taken-at"])
		if err != nil || at.Before(started.Truncate(time.Second)) {
			continue
		}
		sts := vs.Labels["snapgate.io/statefulset"]
		if taken[sts] == nil {
			taken[sts] = map[string]bool{}
		}
		taken[sts][vs.Labels["snapgate.io/set"]] = true
	}
	extra := 0
	for i := range sets {
		name := fmt.Sprintf("s%02d", i)
		if n := len(taken[name]); n != 1 {
			b.Errorf("statefulset %s: %d sets taken for one upgrade", name, n)
			extra += max(n-1, 0)
		}
	}
	return extra
}

// pvcsOf is the claims of a StatefulSet's replicas, as the controller names them.
func pvcsOf(name string, replicas int) []string {
	pvcs := make([]string, replicas)
	for i := range pvcs {
		pvcs[i] = fmt.Sprintf("data-%s-%d", name, i)
	}
	return pvcs
}

// upgrade changes the pod template with a merge patch, as kubectl and Helm do,
// and returns how long the change took to be admitted (snapgate takes and waits
// for the set inside that call).
func upgrade(b *testing.B, c *framework.Cluster, ctx context.Context, ns, name string, round int) time.Duration {
	took, err := patchTemplate(ctx, c, ns, name, round)
	if err != nil {
		b.Fatalf("round %d: %v", round, err)
	}
	return took
}

// patchTemplate is upgrade for any goroutine: it returns the error.
func patchTemplate(ctx context.Context, c *framework.Cluster, ns, name string, round int) (time.Duration, error) {
	return patchWith(ctx, c.Ctrl, ns, name, round)
}

// patchWith is patchTemplate through cl.
func patchWith(ctx context.Context, cl client.Client, ns, name string, round int) (time.Duration, error) {
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"bench/round":"` + strconv.Itoa(round) + `"}}}}}`)
	start := time.Now()
	if err := cl.Patch(ctx, sts, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return 0, fmt.Errorf("guarded update of %s: %w", name, err)
	}
	return time.Since(start), nil
}

// snapshotDirectly creates one VolumeSnapshot of class per PVC, all at once,
// and returns how long until every one is readyToUse, as seen on a watch.
func snapshotDirectly(b *testing.B, c *framework.Cluster, ns, class string, pvcs []string, round int) time.Duration {
	return snapshotsLike(b, c, ns, class, pvcs, fmt.Sprintf("baseline-%d", round), nil)
}

// recordOf is what snapgate wrote on the snapshots of one of the
// StatefulSet's sets, by PVC: the baseline "with the record" carries the same.
func recordOf(b *testing.B, c *framework.Cluster, ns, name string) map[string]map[string]string {
	snaps := c.Snapshots(b, ns, name)
	if len(snaps) == 0 {
		b.Fatalf("statefulset %s/%s has no set to copy the record of", ns, name)
	}
	set := snaps[0].Labels["snapgate.io/set"]
	record := map[string]map[string]string{}
	for _, s := range snaps {
		if s.Labels["snapgate.io/set"] == set {
			record[*s.Spec.Source.PersistentVolumeClaimName] = s.Annotations
		}
	}
	return record
}

// snapshotsLike is snapshotDirectly with annotations on the snapshots (ann
// by PVC), and label naming the round.
func snapshotsLike(b *testing.B, c *framework.Cluster, ns, class string, pvcs []string, label string, ann map[string]map[string]string) time.Duration {
	_, ready := snapshotTimes(b, c, ns, class, pvcs, label, ann)
	return ready
}

// snapshotTimes is snapshotsLike, returning how long until every snapshot was
// cut (has a creation time) as well as ready.
func snapshotTimes(b *testing.B, c *framework.Cluster, ns, class string, pvcs []string, label string, ann map[string]map[string]string) (cutAt, readyAt time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	selector := client.MatchingLabels{"bench/round": label}
	var list snapv1.VolumeSnapshotList
	if err := c.Ctrl.List(ctx, &list, client.InNamespace(ns), selector); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for _, pvc := range pvcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vs := &snapv1.VolumeSnapshot{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pvc + "-" + label, Labels: map[string]string{"bench/round": label}, Annotations: ann[pvc]},
				Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}, VolumeSnapshotClassName: &class},
			}
			if err := c.Ctrl.Create(ctx, vs); err != nil {
				b.Errorf("baseline snapshot: %v", err)
			}
		}()
	}
	wg.Wait()
	cut, ready := map[string]bool{}, map[string]bool{}
	err := watchUntil(ctx, c, ns, selector, list.ResourceVersion, func(vs *snapv1.VolumeSnapshot) bool {
		if vs.Status == nil {
			return false
		}
		if vs.Status.CreationTime != nil && !cut[vs.Name] {
			if cut[vs.Name] = true; len(cut) == len(pvcs) {
				cutAt = time.Since(start)
			}
		}
		if vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse {
			if ready[vs.Name] = true; len(ready) == len(pvcs) {
				readyAt = time.Since(start)
				return true
			}
		}
		return false
	})
	if err != nil {
		b.Fatalf("%s: %d/%d snapshots ready: %v", label, len(ready), len(pvcs), err)
	}
	return cutAt, readyAt
}

// watchUntil watches the VolumeSnapshots of ns that carry labels, from
// resourceVersion rv, and passes each to seen until it returns true. A watch
// that ends (the API server or the connection closed it: seen once in a
// 100-replica round) is opened again from the last resourceVersion seen, as
// client-go's informers do.
func watchUntil(ctx context.Context, c *framework.Cluster, ns string, labels client.MatchingLabels, rv string, seen func(*snapv1.VolumeSnapshot) bool) error {
	for {
		w, err := c.Ctrl.Watch(ctx, &snapv1.VolumeSnapshotList{}, client.InNamespace(ns), labels, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})
		if err != nil {
			return err
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				w.Stop()
				return fmt.Errorf("watch: %v", apierrors.FromObject(ev.Object))
			}
			vs, ok := ev.Object.(*snapv1.VolumeSnapshot)
			if !ok {
				continue
			}
			rv = vs.ResourceVersion
			if ev.Type != watch.Bookmark && seen(vs) {
				w.Stop()
				return nil
			}
		}
		w.Stop()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkMemoryWith1000StatefulSets fills the cluster with 1,000 guarded
// StatefulSets, sends a guarded change through snapgate, and reports snapgate's
// resident memory; then soaks it with 10,000 requests that reach it and need
// nothing, reporting its memory again, the API server's latency for them and
// snapgate's CPU per request; and the same latency with snapgate stopped.
func BenchmarkMemoryWith1000StatefulSets(b *testing.B) {
	c := framework.Connect(b)
	ns := c.KwokNamespace(b)
	ctx := context.Background()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			zero := int32(0)
			sts := &appsv1.StatefulSet{
				// Guarded, on delete only: a template change reaches snapgate
				// (the webhook's conditions match it) and needs nothing.
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s%04d", i), Labels: map[string]string{"snapgate.io/guard": "enabled", "app": "many"},
					Annotations: map[string]string{"snapgate.io/on": "delete"}},
				Spec: appsv1.StatefulSetSpec{
					Replicas: &zero, ServiceName: "many",
					Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "many"}},
					Template: corev1.PodTemplateSpec{
						ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "many"}},
						Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:16"}}},
					},
				},
			}
			if err := c.Ctrl.Create(ctx, sts); err != nil {
				b.Errorf("create %s: %v", sts.Name, err)
			}
		}()
	}
	wg.Wait()
	for b.Loop() {
		c.MustKubectl(b, "-n", ns, "set", "image", "statefulset/s0000", fmt.Sprintf("db=postgres:%d", 17+time.Now().Nanosecond()%1000))
	}
	rss := snapgateRSS(b, c)
	b.ReportMetric(rss, "rss_MiB")
	fmt.Printf("statefulsets=1000 snapgate_rss_mib=%.1f\n", rss)
	report(b, c, "rss.statefulsets=1000", rss, "MiB")

	b.StopTimer()
	const soak = 10_000
	cpu := snapgateCPU(b, c)
	calls := readCallMetrics(b, c)
	with := passThrough(b, c, ns, soak, 16)
	calls.report(b, c, "passthrough.api", readCallMetrics(b, c))
	cpu = snapgateCPU(b, c) - cpu
	after := snapgateRSS(b, c)
	report(b, c, "rss.soak=10000", after, "MiB")
	report(b, c, "passthrough.api.p50", ms(with[len(with)/2]), "ms")
	report(b, c, "passthrough.api.p99", ms(with[len(with)*99/100]), "ms")
	report(b, c, "passthrough.cpu_per_request", cpu.Seconds()*1e6/soak, "µs")
	// One at a time, the API server is not saturated: what is added is the
	// webhook call itself, not the queueing behind snapgate's CPU.
	calls = readCallMetrics(b, c)
	serial := passThrough(b, c, ns, 1000, 1)
	calls.report(b, c, "passthrough.serial", readCallMetrics(b, c))
	report(b, c, "passthrough.serial.p50", ms(serial[len(serial)/2]), "ms")
	report(b, c, "passthrough.serial.p99", ms(serial[len(serial)*99/100]), "ms")
	c.StopSnapgate(b)
	without := passThrough(b, c, ns, soak/5, 16)
	serialWithout := passThrough(b, c, ns, 1000, 1)
	c.StartSnapgate(b)
	report(b, c, "passthrough.api.nogate.p50", ms(without[len(without)/2]), "ms")
	report(b, c, "passthrough.api.nogate.p99", ms(without[len(without)*99/100]), "ms")
	report(b, c, "passthrough.serial.nogate.p50", ms(serialWithout[len(serialWithout)/2]), "ms")
	report(b, c, "passthrough.serial.nogate.p99", ms(serialWithout[len(serialWithout)*99/100]), "ms")
}

// passThrough sends n template changes to the StatefulSets s0000..s0999 of ns,
// at most concurrency at a time, and returns how long each took, sorted. Its
// client has no rate limit of its own: the tests' 100 a second would be what
// is measured.
func passThrough(b *testing.B, c *framework.Cluster, ns string, n, concurrency int) []time.Duration {
	b.Helper()
	cfg := rest.CopyConfig(c.Config)
	cfg.RateLimiter = flowcontrol.NewFakeAlwaysRateLimiter()
	cl, err := client.New(cfg, client.Options{Scheme: c.Ctrl.Scheme()})
	if err != nil {
		b.Fatal(err)
	}
	took := make([]time.Duration, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				var err error
				if took[i], err = patchWith(context.Background(), cl, ns, fmt.Sprintf("s%04d", i%1000), i); err != nil {
					b.Errorf("request %d: %v", i, err)
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	slices.Sort(took)
	return took
}

// callMetrics are where a pass-through request's added time goes, as sums
// and counts: the API server's two webhook admission steps (matching the
// webhooks, their CEL conditions, converting the objects, and the calls);
// inside them, its calls to snapgate's guard (building the AdmissionReview,
// the round trip, reading the answer); and inside those, snapgate's handling
// (reading and decoding the review, deciding, writing the answer). Without
// snapgate its webhook configurations are gone, so all of it is added.
type callMetrics struct{ stepSum, steps, callSum, calls, handleSum, handled float64 }

func readCallMetrics(b *testing.B, c *framework.Cluster) callMetrics {
	const step = "apiserver_admission_controller_admission_duration_seconds"
	const call = "apiserver_admission_webhook_admission_duration_seconds"
	const handle = "controller_runtime_webhook_latency_seconds"
	update := `operation="UPDATE"`
	return callMetrics{
		stepSum: c.APIServerMetricValue(b, step+"_sum", `name="MutatingAdmissionWebhook"`, update) +
			c.APIServerMetricValue(b, step+"_sum", `name="ValidatingAdmissionWebhook"`, update),
		steps:     c.APIServerMetricValue(b, step+"_count", `name="MutatingAdmissionWebhook"`, update),
		callSum:   c.APIServerMetricValue(b, call+"_sum", update, `type="admit"`),
		calls:     c.APIServerMetricValue(b, call+"_count", update, `type="admit"`),
		handleSum: c.MetricValue(b, handle+"_sum", `webhook="/guard"`),
		handled:   c.MetricValue(b, handle+"_count", `webhook="/guard"`),
	}
}

// report writes the mean times since m, per request, as <prefix>.admission,
// <prefix>.webhook_call and <prefix>.handler.
func (m callMetrics) report(b *testing.B, c *framework.Cluster, prefix string, now callMetrics) {
	if now.steps == m.steps || now.calls == m.calls || now.handled == m.handled {
		b.Fatalf("%s: the API server counted %v admissions and %v calls to snapgate's guard, snapgate %v; want the requests sent",
			prefix, now.steps-m.steps, now.calls-m.calls, now.handled-m.handled)
	}
	// The steps also count every other update the API server admitted (Leases,
	// status), which call no webhook and take microseconds: the step's time is
	// shared among the requests that called snapgate.
	report(b, c, prefix+".admission", 1000*(now.stepSum-m.stepSum)/(now.calls-m.calls), "ms")
	report(b, c, prefix+".webhook_call", 1000*(now.callSum-m.callSum)/(now.calls-m.calls), "ms")
	report(b, c, prefix+".handler", 1000*(now.handleSum-m.handleSum)/(now.handled-m.handled), "ms")
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// snapgatePID is the pid of the snapgate of `make run`.
func snapgatePID(b *testing.B, c *framework.Cluster) string {
	pid, err := os.ReadFile(filepath.Join(c.Dir, "pids", "snapgate.pid"))
	if err != nil {
		b.Fatalf("snapgate pid: %v (run `make run` first)", err)
	}
	return strings.TrimSpace(string(pid))
}

// snapgateCPU is the CPU time snapgate has used, user and system, from /proc.
func snapgateCPU(b *testing.B, c *framework.Cluster) time.Duration {
	return processCPU(b, snapgatePID(b, c))
}

// apiServerCPU is the CPU time the API server has used.
func apiServerCPU(b *testing.B, c *framework.Cluster) time.Duration {
	pid, err := os.ReadFile(filepath.Join(c.Dir, "kwok", "clusters", "snapgate", "pids", "kube-apiserver.pid"))
	if err != nil {
		b.Fatalf("the API server's pid: %v", err)
	}
	return processCPU(b, strings.TrimSpace(string(pid)))
}

// processCPU is the CPU time process pid has used.
func processCPU(b *testing.B, pid string) time.Duration {
	stat, err := os.ReadFile(filepath.Join("/proc", pid, "stat"))
	if err != nil {
		b.Fatal(err)
	}
	// The fields after the command's closing parenthesis; utime and stime are
	// the 12th and 13th of them, in clock ticks (100 a second on Linux).
	f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func snapgateRSS(b *testing.B, c *framework.Cluster) float64 {
	status, err := os.ReadFile(filepath.Join("/proc", snapgatePID(b, c), "status"))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	b.Fatal("no VmRSS in /proc status")
	return 0
}
