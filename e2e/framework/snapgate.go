package framework

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	toolscache "k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

// WaitRollback watches a StatefulSet until its rollback has ended (the trigger
// removed, snapgate.io/rollback-status Succeeded or Failed) and returns how.
func (c *Cluster) WaitRollback(t testing.TB, ns, name string, timeout time.Duration) policy.RollbackState {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	lw := toolscache.NewListWatchFromClient(c.Client.AppsV1().RESTClient(), "statefulsets", ns, fields.OneTermEqualSelector("metadata.name", name))
	var last policy.RollbackState
	_, err := watchtools.UntilWithSync(ctx, lw, &appsv1.StatefulSet{}, nil, func(ev watch.Event) (bool, error) {
		sts, ok := ev.Object.(*appsv1.StatefulSet)
		if !ok || ev.Type == watch.Deleted {
			return false, fmt.Errorf("statefulset %s/%s is gone", ns, name)
		}
		st, _ := policy.ParseRollbackState(sts.Annotations)
		_, asked := sts.Annotations[policy.RollbackTo]
		last = st
		return !asked && (st.Phase == policy.PhaseSucceeded || st.Phase == policy.PhaseFailed), nil
	})
	if err != nil {
		t.Fatalf("rollback of %s/%s did not end within %s (last status %+v): %v", ns, name, timeout, last, err)
	}
	return last
}

// WaitRollbackPhase watches a StatefulSet until its rollback is at phase.
func (c *Cluster) WaitRollbackPhase(t testing.TB, ns, name string, phase policy.RollbackPhase, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	lw := toolscache.NewListWatchFromClient(c.Client.AppsV1().RESTClient(), "statefulsets", ns, fields.OneTermEqualSelector("metadata.name", name))
	_, err := watchtools.UntilWithSync(ctx, lw, &appsv1.StatefulSet{}, nil, func(ev watch.Event) (bool, error) {
		sts, ok := ev.Object.(*appsv1.StatefulSet)
		st, _ := policy.ParseRollbackState(sts.Annotations)
		return ok && st.Phase == phase, nil
	})
	if err != nil {
		t.Fatalf("rollback of %s/%s did not reach %s within %s: %v", ns, name, phase, timeout, err)
	}
}

// Budget is how long the running snapgate lets one request wait for its set.
func (c *Cluster) Budget(t testing.TB) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Dir, "snapgate.budget"))
	if err != nil {
		t.Fatalf("snapgate is not running against the stack (%v): run `make run` first", err)
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("snapgate budget %q: %v", b, err)
	}
	return d
}

// ReadyDeadline is how long the running snapgate lets a set be not ready
// before it tells it overdue.
func (c *Cluster) ReadyDeadline(t testing.TB) time.Duration {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Dir, "snapgate.ready-deadline"))
	if err != nil {
		t.Fatalf("snapgate is not running against the stack with a ready deadline (%v): run `make run` first", err)
	}
	d, err := time.ParseDuration(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("snapgate ready deadline %q: %v", b, err)
	}
	return d
}

// Metric is the sum of a metric's samples whose labels contain every one of
// labels (e.g. `finding="overdue"`), from snapgate's own metrics endpoint.
func (c *Cluster) Metric(t testing.TB, name string, labels ...string) int {
	t.Helper()
	return int(c.MetricValue(t, name, labels...))
}

// MetricValue is Metric unrounded, for sums of seconds.
func (c *Cluster) MetricValue(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	return c.sumMetric(t, name, withLabels(labels))
}

// GuardDecisions is how many updates (not deletes) snapgate's guard has decided,
// from its own metrics endpoint. Deletes are left out: earlier tests' namespaces
// are still being removed, and snapgate rightly guards their StatefulSets' deletes.
func (c *Cluster) GuardDecisions(t testing.TB) int {
	t.Helper()
	serialOnly(t, "GuardDecisions")
	return int(c.sumMetric(t, "snapgate_admission_decisions_total", func(line string) bool { return !strings.Contains(line, `change="delete"`) }))
}

// WebhookAddr is where the snapgate of `make run` serves its webhook (TLS).
func (c *Cluster) WebhookAddr() string { return fmt.Sprintf("127.0.0.1:%d", webhookPort()) }

// webhookPort is snapgate.sh's: SNAPGATE_WEBHOOK_PORT, or 19443; metrics are
// served on the port after it.
func webhookPort() int {
	if p, err := strconv.Atoi(os.Getenv("SNAPGATE_WEBHOOK_PORT")); err == nil {
		return p
	}
	return 19443
}

// sumMetric sums the samples of a metric whose lines keep says to count.
func (c *Cluster) sumMetric(t testing.TB, name string, keep func(line string) bool) float64 {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", webhookPort()+1))
	if err != nil {
		t.Fatalf("read snapgate metrics: %v", err)
	}
	defer resp.Body.Close()
	total, err := sumSamples(resp.Body, name, keep)
	if err != nil {
		t.Fatalf("read snapgate metrics: %v", err)
	}
	return total
}

// APIServerMetricValue is MetricValue of the API server's own /metrics, as
// `kubectl get --raw /metrics` shows them: e.g. how long its calls to a
// webhook took.
func (c *Cluster) APIServerMetricValue(t testing.TB, name string, labels ...string) float64 {
	t.Helper()
	body, err := c.Client.CoreV1().RESTClient().Get().AbsPath("/metrics").Stream(context.Background())
	if err != nil {
		t.Fatalf("read the API server's metrics: %v", err)
	}
	defer body.Close()
	total, err := sumSamples(body, name, withLabels(labels))
	if err != nil {
		t.Fatalf("read the API server's metrics: %v", err)
	}
	return total
}

// withLabels keeps the samples whose labels contain every one of labels.
func withLabels(labels []string) func(line string) bool {
	return func(line string) bool {
		for _, l := range labels {
			if !strings.Contains(line, l) {
				return false
			}
		}
		return true
	}
}

// sumSamples sums the samples of metric name that keep accepts, from the
// Prometheus text format.
func sumSamples(r io.Reader, name string, keep func(line string) bool) (float64, error) {
	total := 0.0
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		if (strings.HasPrefix(line, name+"{") || strings.HasPrefix(line, name+" ")) && keep(line) {
			f := strings.Fields(line)
			n, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += n
		}
	}
	return total, sc.Err()
}

// Snapshots lists snapgate's VolumeSnapshots of a StatefulSet, by name.
func (c *Cluster) Snapshots(t testing.TB, ns, sts string) []snapv1.VolumeSnapshot {
	t.Helper()
	var list snapv1.VolumeSnapshotList
	if err := c.Ctrl.List(context.Background(), &list, client.InNamespace(ns), client.MatchingLabels{"snapgate.io/statefulset": sts}); err != nil {
		t.Fatalf("list snapshots of %s/%s: %v", ns, sts, err)
	}
	sort.Slice(list.Items, func(i, j int) bool { return list.Items[i].Name < list.Items[j].Name })
	return list.Items
}

// SnapshotNames are the names of snapshots, in order.
func SnapshotNames(snaps []snapv1.VolumeSnapshot) []string {
	out := make([]string, len(snaps))
	for i, s := range snaps {
		out[i] = s.Name
	}
	return out
}

// StatefulSet renders a guarded StatefulSet of one container "db" of image,
// for the tests whose subject is the API (its pods go to kwok's nodes there).
func StatefulSet(name string, replicas int, image string, annotations map[string]string) string {
	return GuardedSet{Name: name, Replicas: replicas, Annotations: annotations,
		PodSpec: "      containers:\n      - name: db\n        image: " + image + "\n"}.YAML()
}

// SnapshotClass renders a VolumeSnapshotClass of the hostpath driver whose
// parameters stage faults (readyDelay, cutDelay, failWith).
func SnapshotClass(name string, params map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: snapshot.storage.k8s.io/v1\nkind: VolumeSnapshotClass\nmetadata:\n  name: %s\ndriver: hostpath.csi.snapgate.io\ndeletionPolicy: Delete\nparameters:\n", name)
	for k, v := range params {
		fmt.Fprintf(&b, "  %s: %q\n", k, v)
	}
	return b.String()
}

// RestoredClaim renders a PVC restored from a VolumeSnapshot, as a user makes one.
func RestoredClaim(name, snapshot string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: %s
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: %s}
`, name, snapshot)
}

// KillSnapgate kills the running snapgate with SIGKILL, as a crash or an
// evicted pod would end it: nothing of its own shutdown runs.
func (c *Cluster) KillSnapgate(t testing.TB) {
	t.Helper()
	serialOnly(t, "KillSnapgate")
	b, err := os.ReadFile(filepath.Join(c.Dir, "pids", "snapgate.pid"))
	if err != nil {
		t.Fatalf("snapgate's pid: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("snapgate's pid %q: %v", b, err)
	}
	p, err := os.FindProcess(pid)
	if err == nil {
		err = p.Signal(syscall.SIGKILL)
	}
	if err != nil {
		t.Fatalf("kill snapgate (pid %d): %v", pid, err)
	}
	// Gone, or a zombie that nothing here may reap: either way it serves no more.
	for p.Signal(syscall.Signal(0)) == nil {
		if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || strings.Contains(string(stat), ") Z ") {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// StartSnapgate starts snapgate against the stack again, as `make run` does.
func (c *Cluster) StartSnapgate(t testing.TB) {
	t.Helper()
	serialOnly(t, "StartSnapgate")
	if r := c.Run(t, "", filepath.Join(RepoRoot(), "e2e", "stack", "snapgate.sh"), "up"); r.Err != nil {
		t.Fatalf("snapgate.sh up: %v\n%s", r.Err, r.Stderr)
	}
}

// StopSnapgate stops the snapgate of `make run` as `make run-down` does: it
// removes its webhook configurations on the way out.
func (c *Cluster) StopSnapgate(t testing.TB) {
	t.Helper()
	serialOnly(t, "StopSnapgate")
	if r := c.Run(t, "", filepath.Join(RepoRoot(), "e2e", "stack", "snapgate.sh"), "down"); r.Err != nil {
		t.Fatalf("snapgate.sh down: %v\n%s", r.Err, r.Stderr)
	}
}

// SnapshotClassForTest creates a VolumeSnapshotClass of the hostpath driver
// with fault parameters (see SnapshotClass), named after the test's namespace,
// and deletes it when the test ends.
func (c *Cluster) SnapshotClassForTest(t testing.TB, ns, suffix string, params map[string]string) string {
	t.Helper()
	name := ns + "-" + suffix
	c.Apply(t, "", SnapshotClass(name, params))
	// This runs before the namespace's own cleanup. The snapshot controller
	// cannot delete a snapshot whose class is gone, and retries it every
	// second until the class is back: seen here as thousands of log lines a
	// minute. So the namespace's snapshots go first, and a namespace kept for
	// a failed test keeps its class too.
	t.Cleanup(func() {
		if t.Failed() {
			return
		}
		c.Kubectl(t, "-n", ns, "delete", "volumesnapshots", "--all", "--timeout=60s")
		c.Kubectl(t, "delete", "volumesnapshotclass", name)
	})
	return name
}

// RestartAPIServer kills the API server with SIGKILL and starts it again
// (cluster.sh restart-apiserver), and returns once it is ready. Every client
// of it, snapgate, the kubelet and the CSI sidecars too, loses its
// connections and watches meanwhile.
func (c *Cluster) RestartAPIServer(t testing.TB) {
	t.Helper()
	serialOnly(t, "RestartAPIServer")
	if r := c.Run(t, "", filepath.Join(RepoRoot(), "e2e", "stack", "cluster.sh"), "restart-apiserver"); r.Err != nil {
		t.Fatalf("cluster.sh restart-apiserver: %v\n%s", r.Err, r.Stderr)
	}
}
