//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/snapgate/snapgate/e2e/framework"
)

// TestPostgresUpgradeIsCheckpointedAndRestorable is the seed's story on real
// PostgreSQL: 10,000 rows, an upgrade with the postgres preset, a CHECKPOINT in
// every replica before its snapshot (as PostgreSQL's own statistics count it, and
// as the log inside the snapshot shows),
// and a volume restored from the snapshot on which PostgreSQL starts and finds
// all 10,000 rows.
func TestPostgresUpgradeIsCheckpointedAndRestorable(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	pg := framework.NewPostgres(t, c, ns)
	c.Apply(t, ns, pg.StatefulSet("postgres", 3, "postgres:16", map[string]string{"snapgate.io/hook-preset": "postgres"}))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres", "--timeout=90s")
	pods := []string{"postgres-0", "postgres-1", "postgres-2"}
	for _, pod := range pods {
		pg.Start(t, pod)
	}
	pg.Query(t, "postgres-0", "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 10000) g")
	before := map[string]int{}
	for _, pod := range pods {
		before[pod] = pg.Checkpoints(t, pod)
	}

	r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/postgres", "postgres=postgres:17")
	if r.Err != nil {
		t.Fatalf("upgrade: %v\n%s", r.Err, r.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres", "--timeout=90s")
	for _, pod := range pods {
		if after := pg.Checkpoints(t, pod); after <= before[pod] {
			t.Errorf("%s: PostgreSQL counts %d requested checkpoints, %d before the upgrade; want the preset's CHECKPOINT", pod, after, before[pod])
		}
	}

	snaps := c.Snapshots(t, ns, "postgres")
	if len(snaps) != 3 || !strings.HasPrefix(snaps[0].Name, "data-postgres-0-") {
		t.Fatalf("snapshots = %v", framework.SnapshotNames(snaps))
	}
	c.Apply(t, ns, framework.RestoredClaim("restored", snaps[0].Name)+`---
apiVersion: v1
kind: Pod
metadata:
  name: restored
spec:
`+strings.ReplaceAll(pg.PodSpec("  "), "IMAGE", "postgres:16")+`  volumes: [{name: data, persistentVolumeClaim: {claimName: restored}}]
`)
	c.MustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/restored", "--timeout=60s")
	// The server's log is on the volume: the copy holds what it logged up to the
	// cut, and the CHECKPOINT command logs "immediate force wait".
	if log := c.MustKubectl(t, "-n", ns, "exec", "restored", "--", "cat", "pg.log"); !strings.Contains(log, "checkpoint starting: immediate force wait") {
		t.Errorf("the snapshot's PostgreSQL log shows no CHECKPOINT before the cut:\n%s", log)
	}
	pg.Start(t, "restored")
	if got := pg.Query(t, "restored", "SELECT count(*) FROM orders"); got != "10000" {
		t.Fatalf("restored server counts %s orders, want 10000", got)
	}
}
