package framework

import (
	"fmt"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// Postgres runs real PostgreSQL servers (Debian's) for the pods of a namespace:
// one server per pod, on the pod's volume directory, listening on a unix socket
// there, run as the postgres user as in a database pod. kubectl exec into the
// pod reaches its own server: the pod's env sets PGHOST to its volume.
type Postgres struct {
	c        *Cluster
	ns       string
	bin      string
	uid, gid int64
}

// NewPostgres finds the PostgreSQL binaries and user (see `make deps`).
func NewPostgres(t testing.TB, c *Cluster, ns string) *Postgres {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		t.Fatal("no PostgreSQL server binaries under /usr/lib/postgresql: run `make deps`")
	}
	sort.Strings(bins)
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("no postgres user (%v): run `make deps`", err)
	}
	uid, _ := strconv.ParseInt(u.Uid, 10, 64)
	gid, _ := strconv.ParseInt(u.Gid, 10, 64)
	return &Postgres{c: c, ns: ns, bin: filepath.Dir(bins[len(bins)-1]), uid: uid, gid: gid}
}

// PodSpec is the part of a pod spec that makes a database pod of it: env that
// points psql at the pod's own server, and the postgres user.
func (p *Postgres) PodSpec(indent string) string {
	lines := []string{
		fmt.Sprintf("securityContext: {runAsUser: %d, runAsGroup: %d}", p.uid, p.gid),
		"containers:",
		"- name: postgres",
		"  image: IMAGE",
		"  env:",
		"  - {name: PGHOST, value: $(VOLUME_DIR)}",
		"  - {name: PGUSER, value: postgres}",
		"  - {name: PGDATABASE, value: postgres}",
	}
	return indent + strings.Join(lines, "\n"+indent) + "\n"
}

// StatefulSet renders a guarded PostgreSQL StatefulSet.
func (p *Postgres) StatefulSet(name string, replicas int, image string, annotations map[string]string) string {
	base := StatefulSet(name, replicas, image, annotations)
	spec := "    spec:\n      containers:\n      - name: db\n        image: " + image + "\n"
	if !strings.Contains(base, spec) {
		panic("framework.StatefulSet changed shape")
	}
	return strings.Replace(base, spec, "    spec:\n"+strings.ReplaceAll(p.PodSpec("      "), "IMAGE", image), 1)
}

// Start initialises the pod's data directory if it has none and starts its
// server, and stops it when the test ends. A data directory restored from a
// snapshot carries the lock files of the server it was copied from, which mean
// nothing on this "host"; it is removed, as a pod on another node would not see it.
func (p *Postgres) Start(t testing.TB, pod string) {
	t.Helper()
	// The data directory is named by its absolute path, so that the stack's
	// cluster-down can find and stop a server a killed test left behind.
	script := fmt.Sprintf(`set -e
[ -f pgdata/PG_VERSION ] || %[1]s/initdb -D "$VOLUME_DIR/pgdata" -U postgres -A trust --no-sync >init.log
rm -f pgdata/postmaster.pid .s.PGSQL.*.lock
%[1]s/pg_ctl -D "$VOLUME_DIR/pgdata" -w -l pg.log -o "-c listen_addresses='' -c unix_socket_directories=$VOLUME_DIR -c fsync=off" start >/dev/null`, p.bin)
	p.c.MustKubectl(t, "-n", p.ns, "exec", pod, "--", "sh", "-c", script)
	t.Cleanup(func() {
		// Immediate: the test is over, and its namespace is about to go.
		p.c.Kubectl(t, "-n", p.ns, "exec", pod, "--", p.bin+"/pg_ctl", "-D", "pgdata", "-m", "immediate", "stop")
	})
}

// Stop shuts the pod's server down cleanly, as the end of its pod would.
func (p *Postgres) Stop(t testing.TB, pod string) {
	t.Helper()
	p.c.MustKubectl(t, "-n", p.ns, "exec", pod, "--", p.bin+"/pg_ctl", "-D", "pgdata", "-m", "fast", "-w", "stop")
}

// Query runs SQL with psql in the pod and returns its unaligned output.
func (p *Postgres) Query(t testing.TB, pod, sql string) string {
	t.Helper()
	out := p.c.MustKubectl(t, "-n", p.ns, "exec", pod, "--", "psql", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql)
	return strings.TrimSpace(out)
}

// Checkpoints is how many checkpoints were requested of the pod's server (by
// CHECKPOINT among others), from PostgreSQL's own statistics.
func (p *Postgres) Checkpoints(t testing.TB, pod string) int {
	t.Helper()
	// PostgreSQL 17 moved the counter to pg_stat_checkpointer.
	q := "SELECT checkpoints_req FROM pg_stat_bgwriter"
	if v, _ := strconv.Atoi(p.Query(t, pod, "SHOW server_version_num")); v >= 170000 {
		q = "SELECT num_requested FROM pg_stat_checkpointer"
	}
	n, err := strconv.Atoi(p.Query(t, pod, q))
	if err != nil {
		t.Fatalf("checkpoints of %s: %v", pod, err)
	}
	return n
}
