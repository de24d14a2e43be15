package framework

import (
	"fmt"
	"os/user"
	"strconv"
	"strings"
	"testing"
)

// MariaDB runs real MariaDB servers (Debian's) for the pods of a namespace, as
// Postgres does PostgreSQL: one server per pod on the pod's volume directory,
// on a unix socket there, as the mysql user. The pod's env points the mysql
// client at it (MYSQL_HOME holds a my.cnf naming the socket) and sets
// MYSQL_ROOT_PASSWORD as the official images do.
type MariaDB struct {
	c        *Cluster
	ns       string
	uid, gid int64
}

// NewMariaDB finds the mysql user (see `make deps`).
func NewMariaDB(t testing.TB, c *Cluster, ns string) *MariaDB {
	t.Helper()
	u, err := user.Lookup("mysql")
	if err != nil {
		t.Fatalf("no mysql user (%v): run `make deps`", err)
	}
	uid, _ := strconv.ParseInt(u.Uid, 10, 64)
	gid, _ := strconv.ParseInt(u.Gid, 10, 64)
	return &MariaDB{c: c, ns: ns, uid: uid, gid: gid}
}

// StatefulSet renders a guarded MariaDB StatefulSet.
func (m *MariaDB) StatefulSet(name string, replicas int, image string, annotations map[string]string) string {
	base := StatefulSet(name, replicas, image, annotations)
	spec := "    spec:\n      containers:\n      - name: db\n        image: " + image + "\n"
	if !strings.Contains(base, spec) {
		panic("framework.StatefulSet changed shape")
	}
	pod := fmt.Sprintf(`    spec:
      securityContext: {runAsUser: %d, runAsGroup: %d}
      containers:
      - name: mariadb
        image: %s
        env:
        - {name: MYSQL_HOME, value: $(VOLUME_DIR)}
        - {name: MYSQL_ROOT_PASSWORD, value: ""}
        - {name: TMPDIR, value: $(VOLUME_DIR)}
`, m.uid, m.gid, image)
	return strings.Replace(base, spec, pod, 1)
}

// Start initialises the pod's data directory if it has none and starts its
// server, and stops it when the test ends.
func (m *MariaDB) Start(t testing.TB, pod string) {
	t.Helper()
	script := `set -e
printf '[client]\nsocket=%s/mysql.sock\n' "$VOLUME_DIR" >my.cnf
[ -d mysql ] || mariadb-install-db --no-defaults --datadir="$VOLUME_DIR/mysql" --auth-root-authentication-method=normal --skip-test-db >init.log 2>&1
rm -f mysql.pid mysql.sock
(setsid /usr/sbin/mariadbd --no-defaults --datadir="$VOLUME_DIR/mysql" --socket="$VOLUME_DIR/mysql.sock" --skip-networking \
  --pid-file="$VOLUME_DIR/mysql.pid" --log-error="$VOLUME_DIR/mysql.err" </dev/null >/dev/null 2>&1 &)
for i in $(seq 150); do mysql -uroot -e 'SELECT 1' >/dev/null 2>&1 && exit 0; sleep 0.1; done
tail -5 mysql.err >&2; exit 1`
	m.c.MustKubectl(t, "-n", m.ns, "exec", pod, "--", "sh", "-c", script)
	t.Cleanup(func() {
		m.c.Kubectl(t, "-n", m.ns, "exec", pod, "--", "sh", "-c", `kill "$(cat mysql.pid)"`)
	})
}

// Query runs SQL with the mysql client in the pod and returns its output.
func (m *MariaDB) Query(t testing.TB, pod, sql string) string {
	t.Helper()
	return strings.TrimSpace(m.c.MustKubectl(t, "-n", m.ns, "exec", pod, "--", "mysql", "-uroot", "-N", "-B", "-e", sql))
}

// TryQuery is Query that returns the error instead of failing the test.
func (m *MariaDB) TryQuery(t testing.TB, pod, sql string) (string, error) {
	t.Helper()
	r := m.c.Kubectl(t, "-n", m.ns, "exec", pod, "--", "mysql", "-uroot", "-N", "-B", "-e", sql)
	return strings.TrimSpace(r.Stdout + r.Stderr), r.Err
}
