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
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/e2e/framework"
)

// BenchmarkTimeToAdmit compares, in the same run, how long a guarded template
// change takes to be admitted with what the CSI pipeline itself needs to cut and
// ready the same snapshots: the baseline creates the VolumeSnapshots directly, in
// parallel, and waits for all of them to be readyToUse. Rounds alternate the two.
// Run with -benchtime=Nx for N rounds; it prints one line per replica count.
func BenchmarkTimeToAdmit(b *testing.B) {
	for _, replicas := range []int{1, 3, 10} {
		b.Run(fmt.Sprintf("replicas=%d", replicas), func(b *testing.B) {
			c := framework.Connect(b)
			ns := c.KwokNamespace(b)
			name := "bench"
			c.Apply(b, ns, framework.StatefulSet(name, replicas, "postgres:16", nil))
			c.MustKubectl(b, "-n", ns, "rollout", "status", "statefulset/"+name, "--timeout=120s")
			ctx := context.Background()

			var withGate, baseline []time.Duration
			round := 0
			for b.Loop() {
				round++
				// Both sides get the same untimed settling time after them, so that
				// neither is measured while the controllers finish the other's work.
				settle := func() {
					b.StopTimer()
					time.Sleep(time.Second)
					b.StartTimer()
				}
				measureBaseline := func() {
					baseline = append(baseline, snapshotDirectly(b, c, ns, name, replicas, round))
					settle()
				}
				measureGate := func() {
					withGate = append(withGate, upgrade(b, c, ctx, ns, name, round))
					// Untimed: let the rollout finish, so that neither side is measured
					// while the StatefulSet controller replaces pods.
					b.StopTimer()
					c.MustKubectl(b, "-n", ns, "rollout", "status", "statefulset/"+name, "--timeout=120s")
					b.StartTimer()
					settle()
				}
				if round%2 == 0 {
					measureBaseline()
					measureGate()
				} else {
					measureGate()
					measureBaseline()
				}
			}
			g, base := median(withGate), median(baseline)
			b.ReportMetric(float64(g.Milliseconds()), "snapgate_ms")
			b.ReportMetric(float64(base.Milliseconds()), "baseline_ms")
			fmt.Printf("replicas=%d snapgate_ms=%d baseline_ms=%d ratio=%.2f rounds=%d\n",
				replicas, g.Milliseconds(), base.Milliseconds(), float64(g)/float64(base), len(withGate))
		})
	}
}

// upgrade changes the pod template with a merge patch, as kubectl and Helm do,
// and returns how long the change took to be admitted (snapgate takes and waits
// for the set inside that call).
func upgrade(b *testing.B, c *framework.Cluster, ctx context.Context, ns, name string, round int) time.Duration {
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	patch := []byte(`{"spec":{"template":{"metadata":{"annotations":{"bench/round":"` + strconv.Itoa(round) + `"}}}}}`)
	start := time.Now()
	if err := c.Ctrl.Patch(ctx, sts, client.RawPatch(types.MergePatchType, patch)); err != nil {
		b.Fatalf("round %d: guarded update: %v", round, err)
	}
	return time.Since(start)
}

// snapshotDirectly creates one VolumeSnapshot per replica's PVC, all at once,
// and returns how long until every one is readyToUse, as seen on a watch.
func snapshotDirectly(b *testing.B, c *framework.Cluster, ns, name string, replicas, round int) time.Duration {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	label := fmt.Sprintf("baseline-%d", round)
	w, err := c.Ctrl.Watch(ctx, &snapv1.VolumeSnapshotList{}, client.InNamespace(ns), client.MatchingLabels{"bench/round": label})
	if err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < replicas; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pvc := fmt.Sprintf("data-%s-%d", name, i)
			vs := &snapv1.VolumeSnapshot{
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: pvc + "-" + label, Labels: map[string]string{"bench/round": label}},
				Spec:       snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
			}
			if err := c.Ctrl.Create(ctx, vs); err != nil {
				b.Errorf("baseline snapshot: %v", err)
			}
		}()
	}
	wg.Wait()
	ready := map[string]bool{}
	for ev := range w.ResultChan() {
		if ev.Type == watch.Error {
			b.Fatalf("watch: %v", ev.Object)
		}
		if vs, ok := ev.Object.(*snapv1.VolumeSnapshot); ok && vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse {
			ready[vs.Name] = true
			if len(ready) == replicas {
				return time.Since(start)
			}
		}
	}
	b.Fatalf("baseline round %d: only %d/%d snapshots ready", round, len(ready), replicas)
	return 0
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// BenchmarkMemoryWith1000StatefulSets fills the cluster with 1,000 guarded
// StatefulSets, sends a guarded change through snapgate, and reports snapgate's
// resident memory.
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
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("s%04d", i), Labels: map[string]string{"snapgate.io/guard": "enabled", "app": "many"}},
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
}

func snapgateRSS(b *testing.B, c *framework.Cluster) float64 {
	pid, err := os.ReadFile(filepath.Join(c.Dir, "pids", "snapgate.pid"))
	if err != nil {
		b.Fatalf("snapgate pid: %v (run `make run` first)", err)
	}
	status, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(string(pid)), "status"))
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
