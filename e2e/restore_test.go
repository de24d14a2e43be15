//go:build e2e

package e2e

import (
	"strconv"
	"strings"
	"testing"

	"github.com/snapgate/snapgate/e2e/framework"
)

// `snapgate restore set S --into NAME` brings a set's data up beside the live
// one: a new PostgreSQL on copies of the snapshots answers with the data of
// then, while the original goes on with its own; nothing is overwritten.
func TestARestoreIntoANewStatefulSetServesTheOldDataBesideTheLive(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	applyGuide(t, c, ns)
	psql(t, c, ns, "postgres-0", "CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 1000) g")
	snapgate := func(args ...string) framework.Result {
		return c.Run(t, "", c.Bin("snapgate"), append(args, "--kubeconfig", c.Kubeconfig, "-n", ns)...)
	}
	if r := snapgate("snapshot", "sts/postgres"); r.Err != nil {
		t.Fatalf("snapgate snapshot: %v\n%s", r.Err, r.Stderr)
	}
	set := c.Snapshots(t, ns, "postgres")[0].Labels["snapgate.io/set"]
	psql(t, c, ns, "postgres-0", "INSERT INTO orders SELECT g FROM generate_series(1001, 2000) g")

	r := snapgate("restore", "set", set, "--into", "postgres-copy")
	if r.Err != nil || !strings.Contains(r.Stdout, "Restored set "+set+" as statefulset "+ns+"/postgres-copy (1 replica) with 1 PVC") {
		t.Fatalf("snapgate restore: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres-copy", "--timeout=180s")
	waitPostgres(t, c, ns, "postgres-copy-0")
	if n, _ := strconv.Atoi(psql(t, c, ns, "postgres-copy-0", "SELECT count(*) FROM orders")); n != 1000 {
		t.Errorf("the copy has %d orders, want the 1000 of when the set was taken", n)
	}
	if n, _ := strconv.Atoi(psql(t, c, ns, "postgres-0", "SELECT count(*) FROM orders")); n != 2000 {
		t.Errorf("the original has %d orders, want its own 2000", n)
	}
	// The copy is no one else's: not selected by the original's labels, not guarded.
	if got := c.MustKubectl(t, "-n", ns, "get", "pods", "-l", "app=postgres", "-o", "name"); strings.Contains(got, "postgres-copy") {
		t.Errorf("the original's selector finds the copy's pods: %s", got)
	}
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "postgres-copy", "-o", "jsonpath={.metadata.labels.snapgate\\.io/guard}"); got != "disabled" {
		t.Errorf("the copy's snapgate.io/guard = %q, want disabled", got)
	}
	if r := snapgate("restore", "set", set, "--into", "postgres-copy"); r.Err == nil || !strings.Contains(r.Stderr, "statefulset "+ns+"/postgres-copy exists; a restore never overwrites") {
		t.Errorf("a second restore into the same name: %v\n%s", r.Err, r.Stderr)
	}

	// Into another namespace: refused until the Secret the pods need is
	// there, then carried across by the snapshots' contents.
	other := c.Namespace(t)
	into := other + "/postgres"
	if r := snapgate("restore", "set", set, "--into", into); r.Err == nil ||
		!strings.Contains(r.Stderr, "need what namespace "+other+" does not have: secret postgres-secret (env POSTGRES_PASSWORD of container postgres)") {
		t.Fatalf("a restore into a namespace without the Secret: %v\n%s", r.Err, r.Stderr)
	}
	c.MustKubectl(t, "-n", other, "create", "secret", "generic", "postgres-secret", "--from-literal=password=another")
	r = snapgate("restore", "set", set, "--into", into)
	if r.Err != nil || !strings.Contains(r.Stdout, "(deletion policy Retain)") || !strings.Contains(r.Stdout, "as statefulset "+into+" (1 replica) with 1 PVC") {
		t.Fatalf("snapgate restore into %s: %v\n%s%s", into, r.Err, r.Stdout, r.Stderr)
	}
	c.MustKubectl(t, "-n", other, "rollout", "status", "statefulset/postgres", "--timeout=180s")
	waitPostgres(t, c, other, "postgres-0")
	if n, _ := strconv.Atoi(psql(t, c, other, "postgres-0", "SELECT count(*) FROM orders")); n != 1000 {
		t.Errorf("the copy in %s has %d orders, want the 1000 of when the set was taken", other, n)
	}
	// Deleting the copy as the restore said to leaves the original's data.
	c.MustKubectl(t, "-n", other, "delete", "statefulset/postgres", "pvc/data-postgres-0", "--wait=false")
	c.MustKubectl(t, "-n", other, "delete", "volumesnapshot", "-l", "snapgate.io/copy-of="+set)
	c.MustKubectl(t, "delete", "volumesnapshotcontent", "-l", "snapgate.io/copy-of="+set)
	if r := snapgate("restore", "set", set, "--into", "postgres-again"); r.Err != nil {
		t.Errorf("the original set after its copy was deleted: %v\n%s", r.Err, r.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres-again", "--timeout=180s")
	waitPostgres(t, c, ns, "postgres-again-0")
	if n, _ := strconv.Atoi(psql(t, c, ns, "postgres-again-0", "SELECT count(*) FROM orders")); n != 1000 {
		t.Errorf("a restore after the copy was deleted has %d orders, want 1000", n)
	}
}
