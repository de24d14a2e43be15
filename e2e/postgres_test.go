//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// postgresStatefulSet is a guarded StatefulSet of the official postgres image,
// as its docs have one (the password from a Secret, the data volume at PGDATA).
func postgresStatefulSet(name string, replicas int, image string, annotations map[string]string) string {
	return postgresManifest(name, replicas, image, annotations, "", "")
}

// postgresManifest is postgresStatefulSet with more of the container
// (containerExtra, indented by eight spaces: args ...) and of the pod spec
// (podExtra, by six: nodeSelector ...).
func postgresManifest(name string, replicas int, image string, annotations map[string]string, containerExtra, podExtra string) string {
	return `apiVersion: v1
kind: Secret
metadata:
  name: ` + name + `-secret
stringData:
  password: s3cret-pw
---
` + framework.GuardedSet{Name: name, Replicas: replicas, Annotations: annotations, PodSpec: podExtra + `      containers:
      - name: postgres
        image: ` + image + `
` + containerExtra + `        env:
        - name: POSTGRES_PASSWORD
          valueFrom: {secretKeyRef: {name: ` + name + `-secret, key: password}}
        volumeMounts:
        - {name: data, mountPath: /var/lib/postgresql/data}
`}.YAML()
}

// TestPostgresUpgradeIsCheckpointedAndRestorable is the guide's story on real
// PostgreSQL containers: 10,000 rows, an upgrade with the postgres preset, a
// CHECKPOINT in every replica before its snapshot (as each server logs it), and
// a volume restored from a snapshot on which the image's PostgreSQL starts
// (recovering nothing it cannot) and finds all 10,000 rows.
func TestPostgresUpgradeIsCheckpointedAndRestorable(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	c.Apply(t, ns, postgresStatefulSet("postgres", 3, "postgres:15", map[string]string{"snapgate.io/hook-preset": "postgres"}))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres", "--timeout=120s")
	pods := []string{"postgres-0", "postgres-1", "postgres-2"}
	for _, pod := range pods {
		waitPostgres(t, c, ns, pod)
	}
	psql(t, c, ns, "postgres-0", "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 10000) g")

	logs := map[string]*framework.Logs{}
	for _, pod := range pods {
		logs[pod] = c.FollowLogs(t, ns, pod, "postgres")
	}
	time.Sleep(500 * time.Millisecond) // let kubectl logs -f attach before the change
	// PostgreSQL's own count of requested checkpoints, which PostgreSQL 15
	// keeps across a clean restart (its statistics are written at shutdown and
	// read at startup). A CHECKPOINT command counts one, and so does the
	// checkpoint of a clean shutdown (checkpointer.c counts it before
	// ShutdownXLOG): a fresh server reads 1, from the entrypoint's temporary
	// server, and a change that restarts it adds 1 without the preset and 2
	// with it.
	requested := func(pod string) int {
		n, err := strconv.Atoi(psql(t, c, ns, pod, "SELECT checkpoints_req FROM pg_stat_bgwriter"))
		if err != nil {
			t.Fatalf("%s: checkpoints_req: %v", pod, err)
		}
		return n
	}
	before := map[string]int{}
	for _, pod := range pods {
		before[pod] = requested(pod)
	}
	// A change of the template within the same major: the servers come back.
	r := c.Kubectl(t, "-n", ns, "set", "resources", "statefulset/postgres", "-c", "postgres", "--limits=memory=512Mi")
	if r.Err != nil {
		t.Fatalf("upgrade: %v\n%s", r.Err, r.Stderr)
	}
	for _, pod := range pods {
		if log := logs[pod].Wait(t, 2*time.Minute); !checkpointedBeforeShutdown(log) {
			t.Errorf("%s: want the preset's CHECKPOINT before the server was stopped for the change; its log:\n%s", pod, log)
		}
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres", "--timeout=180s")
	for _, pod := range pods {
		waitPostgres(t, c, ns, pod)
		if after := requested(pod); after != before[pod]+2 {
			t.Errorf("%s: pg_stat_bgwriter.checkpoints_req went from %d to %d across the change; want 2 more: the preset's CHECKPOINT and the shutdown's", pod, before[pod], after)
		}
	}

	snaps := c.Snapshots(t, ns, "postgres")
	if len(snaps) != 3 || !strings.HasPrefix(snaps[0].Name, "data-postgres-0-") {
		t.Fatalf("snapshots = %v", framework.SnapshotNames(snaps))
	}
	// The snapshot restored as a user restores one: a PVC from it, and a pod of
	// the same image with it at PGDATA.
	c.Apply(t, ns, framework.RestoredClaim("restored", snaps[0].Name)+"---\n"+postgresPod("restored", "restored"))
	c.MustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/restored", "--timeout=90s")
	waitPostgres(t, c, ns, "restored")
	if got := psql(t, c, ns, "restored", "SELECT count(*) FROM orders"); got != "10000" {
		t.Fatalf("restored server counts %s orders, want 10000", got)
	}
	framework.Eventually(t, 10*time.Second, "the restored server's log", func() error {
		log := c.Kubectl(t, "-n", ns, "logs", "restored").Stdout
		if !strings.Contains(log, "Skipping initialization") || !strings.Contains(log, "database system is ready to accept connections") {
			return fmt.Errorf("log: %s", log)
		}
		return nil
	})
}
