//go:build e2e

package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// helmIn is the test chart (a guarded PostgreSQL StatefulSet) and the real
// Helm, run against the stack in namespace ns.
func helmIn(t *testing.T, c *framework.Cluster, ns string) (string, func(args ...string) framework.Result) {
	chart := filepath.Join(framework.RepoRoot(), "e2e", "testdata", "guarded-db")
	return chart, func(args ...string) framework.Result {
		t.Helper()
		return c.Run(t, "", c.Bin("helm"), append(args, "--namespace", ns, "--kubeconfig", c.Kubeconfig)...)
	}
}

// TestHelmUpgradeIsSnapshotted upgrades a release with the real Helm: the
// upgrade goes through snapgate like any other client's, with the postgres
// preset's CHECKPOINT in the release's real PostgreSQL pods.
func TestHelmUpgradeIsSnapshotted(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	chart, helm := helmIn(t, c, ns)

	if r := helm("install", "shop", chart, "--wait", "--timeout", "90s"); r.Err != nil {
		t.Fatalf("helm install: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	if snaps := c.Snapshots(t, ns, "shop-db"); len(snaps) != 0 {
		t.Fatalf("an install took snapshots: %v", framework.SnapshotNames(snaps))
	}

	for _, pod := range []string{"shop-db-0", "shop-db-1"} {
		waitPostgres(t, c, ns, pod)
	}
	logs := c.FollowLogs(t, ns, "shop-db-0", "db")
	time.Sleep(500 * time.Millisecond) // let kubectl logs -f attach before the upgrade
	r := helm("upgrade", "shop", chart, "--set", "resources.limits.memory=512Mi", "--wait", "--timeout", "90s")
	if r.Err != nil {
		t.Fatalf("helm upgrade: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	if log := logs.Wait(t, time.Minute); !checkpointedBeforeShutdown(log) {
		t.Errorf("want the preset's CHECKPOINT in shop-db-0 before the upgrade stopped it; its log:\n%s", log)
	}
	snaps := c.Snapshots(t, ns, "shop-db")
	if len(snaps) != 2 || !strings.HasPrefix(snaps[0].Name, "data-shop-db-0-") || !strings.HasPrefix(snaps[1].Name, "data-shop-db-1-") {
		t.Fatalf("snapshots after helm upgrade = %v, want one per replica", framework.SnapshotNames(snaps))
	}
	set := snaps[0].Labels["snapgate.io/set"]
	if out := r.Stdout + r.Stderr; !strings.Contains(out, "snapgate: took snapshot set "+set) {
		t.Errorf("helm upgrade printed %q; want snapgate's warning naming set %s", out, set)
	}
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "shop-db", "-o", "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}"); got != "512Mi" {
		t.Fatalf("memory limit = %q after helm upgrade, want 512Mi", got)
	}
}

// TestHelmAtomicUpgradeAndItsRollbackAreBothSnapshotted: `helm upgrade
// --atomic` of a release whose new pods never get ready (PostgreSQL 17 refuses
// the data directory of 15) makes Helm roll the release back. The upgrade and
// Helm's rollback both go through snapgate: the rollback reaches a StatefulSet
// with a crash-looping pod, which gets no hooks and does not stand in the way.
func TestHelmAtomicUpgradeAndItsRollbackAreBothSnapshotted(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	chart, helm := helmIn(t, c, ns)
	if r := helm("install", "shop", chart, "--wait", "--timeout", "90s"); r.Err != nil {
		t.Fatalf("helm install: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	for _, pod := range []string{"shop-db-0", "shop-db-1"} {
		waitPostgres(t, c, ns, pod)
	}
	psql(t, c, ns, "shop-db-0", "CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 500) g")

	r := helm("upgrade", "shop", chart, "--set", "image.tag=17", "--atomic", "--timeout", "40s")
	if r.Err == nil || !strings.Contains(r.Stderr, "has been rolled back due to atomic being set") {
		t.Fatalf("helm upgrade --atomic to a server that cannot start: %v\n%s%s; want Helm to roll the release back", r.Err, r.Stdout, r.Stderr)
	}
	if got := strings.Count(r.Stdout+r.Stderr, "snapgate: took snapshot set shop-db-"); got != 2 {
		t.Errorf("helm printed snapgate's warning %d times, want twice (the upgrade and Helm's rollback):\n%s%s", got, r.Stdout, r.Stderr)
	}
	list := c.Run(t, "", c.Bin("snapgate"), "list", "statefulset/shop-db", "-n", ns)
	if list.Err != nil || strings.Count(list.Stdout, " template ") != 2 {
		t.Fatalf("snapgate list: %v\n%s%s; want two sets, both of reason template", list.Err, list.Stdout, list.Stderr)
	}
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "shop-db", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); got != "postgres:15" {
		t.Fatalf("image after Helm's rollback = %q, want postgres:15", got)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/shop-db", "--timeout=120s")
	waitPostgres(t, c, ns, "shop-db-0")
	if n := psql(t, c, ns, "shop-db-0", "SELECT count(*) FROM orders"); n != "500" {
		t.Fatalf("after Helm's rollback orders has %s rows, want 500", n)
	}
}
