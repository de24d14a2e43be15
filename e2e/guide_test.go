//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// The guide's own StatefulSet, applied as it is, on the stack's real node: a
// PostgreSQL 15 server as PID 1 of a container of the postgres:15 image.
func applyGuide(t *testing.T, c *framework.Cluster, ns string) {
	t.Helper()
	manifest, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "e2e", "testdata", "guide", "postgres.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c.Apply(t, ns, string(manifest))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres", "--timeout=120s")
	waitPostgres(t, c, ns, "postgres-0")
}

// waitPostgres waits until the pod's server answers, as a user retrying psql
// would. On a new data directory the entrypoint first runs a temporary server
// on the same socket, which answers too and then stops: the server meant is
// the one that listens on the network (listen_addresses is *, where the
// temporary one's is empty).
func waitPostgres(t *testing.T, c *framework.Cluster, ns, pod string) {
	t.Helper()
	framework.Eventually(t, 90*time.Second, "PostgreSQL in "+pod+" accepts connections", func() error {
		r := c.Kubectl(t, "-n", ns, "exec", pod, "--", "psql", "-U", "postgres", "-XAtq", "-c", "SHOW listen_addresses")
		if r.Err != nil {
			return fmt.Errorf("%v: %s", r.Err, r.Stderr)
		}
		if got := strings.TrimSpace(r.Stdout); got != "*" {
			return fmt.Errorf("listen_addresses = %q: the entrypoint's temporary server", got)
		}
		return nil
	})
}

// checkpointedBeforeShutdown reports whether a server's log (kubectl logs -f
// until the container ended) shows a CHECKPOINT command's checkpoint
// ("immediate force wait"; a timed one says "time", a shutdown's "shutdown")
// and, after it, the server's shutdown. The entrypoint's temporary server, if
// the log has one, comes first and is left out.
func checkpointedBeforeShutdown(log string) bool {
	from := max(framework.LineIndex(log, "PostgreSQL init process complete", 0), 0)
	checkpoint := framework.LineIndex(log, "checkpoint starting: immediate force wait", from)
	return checkpoint >= 0 && framework.LineIndex(log, "shutdown request", checkpoint) >= 0
}

// postgresPod renders a pod of the official postgres:15 image with a claim at
// PGDATA, as a user starts a server on a restored or retained volume.
func postgresPod(name, claim string) string {
	return `apiVersion: v1
kind: Pod
metadata:
  name: ` + name + `
spec:
  containers:
  - name: postgres
    image: postgres:15
    volumeMounts:
    - {name: data, mountPath: /var/lib/postgresql/data}
  volumes: [{name: data, persistentVolumeClaim: {claimName: ` + claim + `}}]
`
}

// psql runs SQL in the pod as the guide does: kubectl exec ... psql -U postgres.
func psql(t *testing.T, c *framework.Cluster, ns, pod, sql string) string {
	t.Helper()
	return strings.TrimSpace(c.MustKubectl(t, "-n", ns, "exec", pod, "--", "psql", "-U", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql))
}

func TestGuideStatefulSetRunsTheOfficialImageOnTheRealNode(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	applyGuide(t, c, ns)

	if node := c.MustKubectl(t, "-n", ns, "get", "pod", "postgres-0", "-o", "jsonpath={.spec.nodeName}"); node != "snapgate-node" {
		t.Fatalf("postgres-0 runs on %q, want the real node snapgate-node", node)
	}
	// The server is the container's PID 1, run as postgres by the image's entrypoint.
	pid1 := c.MustKubectl(t, "-n", ns, "exec", "postgres-0", "--", "sh", "-c", `tr '\0' ' ' </proc/1/cmdline; echo; stat -c %U /proc/1`)
	if lines := strings.Split(strings.TrimSpace(pid1), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[0], "postgres") || lines[1] != "postgres" {
		t.Fatalf("PID 1 of postgres-0 is %q, want the postgres server run by user postgres", pid1)
	}
	if v := psql(t, c, ns, "postgres-0", "SHOW server_version_num"); !strings.HasPrefix(v, "15") {
		t.Fatalf("server_version_num = %s, want PostgreSQL 15", v)
	}
	// exec runs as root, as in the official image, where no role root exists:
	// what the postgres preset must not trip over.
	r := c.Kubectl(t, "-n", ns, "exec", "postgres-0", "--", "psql", "-c", "SELECT 1")
	if r.Err == nil || !strings.Contains(r.Stderr, `role "root" does not exist`) {
		t.Fatalf("a bare psql in the official image's shape should be refused for role root; got %v: %s", r.Err, r.Stderr)
	}
}

func TestGuideUpgradeIsCheckpointedSnapshottedAndRolledBack(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	applyGuide(t, c, ns)
	psql(t, c, ns, "postgres-0", "CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 10000) g")

	// Opting in, as a user would: the guard label and the preset.
	c.MustKubectl(t, "-n", ns, "label", "statefulset/postgres", "snapgate.io/guard=enabled")
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/postgres", "snapgate.io/hook-preset=postgres")

	// The server logs each checkpoint and why (log_checkpoints is on by default);
	// followed until the upgrade stops the container.
	logs := c.FollowLogs(t, ns, "postgres-0", "postgres")
	time.Sleep(500 * time.Millisecond) // let kubectl logs -f attach before the change
	up := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/postgres", "postgres=postgres:17")
	if up.Err != nil {
		t.Fatalf("the upgrade was refused: %v\n%s", up.Err, up.Stderr)
	}
	if !strings.Contains(up.Stderr, "snapgate: took snapshot set postgres-") || !strings.Contains(up.Stderr, "snapgate.io/rollback-to=") {
		t.Fatalf("the upgrade's warning does not name the set and the rollback: %q", up.Stderr)
	}
	log := logs.Wait(t, 2*time.Minute)
	if !checkpointedBeforeShutdown(log) {
		t.Fatalf("want a CHECKPOINT (immediate force wait) before the server was stopped for the upgrade; the log:\n%s", log)
	}
	snaps := c.Snapshots(t, ns, "postgres")
	if len(snaps) != 1 || snaps[0].Status == nil || snaps[0].Status.ReadyToUse == nil || !*snaps[0].Status.ReadyToUse {
		t.Fatalf("want one ready snapshot of data-postgres-0, got %v", framework.SnapshotNames(snaps))
	}

	// PostgreSQL 17 refuses a data directory of version 15: the upgrade crashes.
	framework.Eventually(t, 90*time.Second, "postgres-0 on PostgreSQL 17 refuses the data directory", func() error {
		out := c.Kubectl(t, "-n", ns, "logs", "postgres-0", "-c", "postgres").Stdout + c.Kubectl(t, "-n", ns, "logs", "postgres-0", "-c", "postgres", "--previous").Stdout
		if !strings.Contains(out, "database files are incompatible with server") {
			return fmt.Errorf("log so far: %q", out)
		}
		return nil
	})

	// One command back: data and pod template.
	rb := c.Run(t, "", c.Bin("snapgate"), "rollback", "statefulset/postgres", "-n", ns, "--wait")
	if rb.Err != nil || !strings.Contains(rb.Stdout, "Rolled back") {
		t.Fatalf("snapgate rollback: %v\n%s\n%s", rb.Err, rb.Stdout, rb.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres", "--timeout=120s")
	waitPostgres(t, c, ns, "postgres-0")
	if v := psql(t, c, ns, "postgres-0", "SHOW server_version_num"); !strings.HasPrefix(v, "15") {
		t.Fatalf("after the rollback server_version_num = %s, want PostgreSQL 15 again", v)
	}
	if n, _ := strconv.Atoi(psql(t, c, ns, "postgres-0", "SELECT count(*) FROM orders")); n != 10000 {
		t.Fatalf("after the rollback orders has %d rows, want 10000", n)
	}
}
