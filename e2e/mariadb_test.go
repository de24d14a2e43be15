//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// mariadbStatefulSet is a guarded MariaDB StatefulSet as the official image's
// docs have one: the root password from a Secret, as an env var or (fromFile)
// as a file named by MARIADB_ROOT_PASSWORD_FILE.
func mariadbStatefulSet(image, class string, fromFile bool) string {
	env := `        env:
        - name: MARIADB_ROOT_PASSWORD
          valueFrom: {secretKeyRef: {name: mariadb, key: root-password}}
        volumeMounts:
        - {name: data, mountPath: /var/lib/mysql}
`
	volumes := ""
	if fromFile {
		env = `        env:
        - {name: MARIADB_ROOT_PASSWORD_FILE, value: /etc/mariadb/root-password}
        volumeMounts:
        - {name: data, mountPath: /var/lib/mysql}
        - {name: secret, mountPath: /etc/mariadb, readOnly: true}
`
		volumes = "      volumes:\n      - {name: secret, secret: {secretName: mariadb}}\n"
	}
	return `apiVersion: v1
kind: Secret
metadata:
  name: mariadb
stringData:
  root-password: "r00t pw"
---
` + framework.GuardedSet{Name: "mysql", Replicas: 2, Annotations: map[string]string{
		"snapgate.io/hook-preset": "mysql", "snapgate.io/snapshot-class": class,
	}, PodSpec: `      containers:
      - name: mariadb
        image: ` + image + `
` + env + volumes}.YAML()
}

// TestMySQLPresetHoldsTheReadLockUntilTheCut runs the mysql preset in real
// MariaDB containers of both images' shapes (10.11 with a mysql command, 11
// with only mariadb): while the snapshots are cut (the class makes that take
// 3 s) each server has a session holding FLUSH TABLES WITH READ LOCK and a
// write waits for it, as MariaDB itself reports; once they are cut, and before
// the change is admitted (the class keeps them not ready for 3 s more), the
// session is gone and writes go through.
func TestMySQLPresetHoldsTheReadLockUntilTheCut(t *testing.T) {
	// Serial: its class's fixed delays (3s to cut, 3s to ready) leave 2s of
	// the e2e budget for the hooks and the copy, which a loaded machine eats.
	for _, tc := range []struct {
		name, image string
		fromFile    bool
	}{
		{"mariadb 10.11, password from env", "mariadb:10.11", false},
		{"mariadb 11 (no mysql command), password from a file", "mariadb:11", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := framework.Connect(t)
			ns := c.Namespace(t)
			class := c.SnapshotClassForTest(t, ns, "slowcut", map[string]string{"cutDelay": "3s", "readyDelay": "3s"})
			c.Apply(t, ns, mariadbStatefulSet(tc.image, class, tc.fromFile))
			c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/mysql", "--timeout=120s")
			query := func(pod, sql string) (string, error) {
				r := c.Kubectl(t, "-n", ns, "exec", pod, "--", "mariadb", "-uroot", "-pr00t pw", "-N", "-B", "-e", sql)
				return strings.TrimSpace(r.Stdout + r.Stderr), r.Err
			}
			for _, pod := range []string{"mysql-0", "mysql-1"} {
				// Not the entrypoint's temporary server, which answers on the
				// same socket with --skip-networking and then stops.
				framework.Eventually(t, 90*time.Second, "MariaDB in "+pod+" accepts connections", func() error {
					out, err := query(pod, "SELECT @@skip_networking")
					if err == nil && out != "0" {
						err = fmt.Errorf("skip_networking = %s: the entrypoint's temporary server", out)
					}
					return err
				})
			}
			if out, err := query("mysql-0", "CREATE DATABASE shop; CREATE TABLE shop.orders (id int PRIMARY KEY); INSERT INTO shop.orders VALUES (1), (2), (3)"); err != nil {
				t.Fatalf("create orders: %v: %s", err, out)
			}
			lockSessions := func(pod string) string {
				out, _ := query(pod, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'DO SLEEP%'")
				return out
			}

			done := make(chan framework.Result, 1)
			go func() {
				done <- c.Kubectl(t, "-n", ns, "set", "resources", "statefulset/mysql", "-c", "mariadb", "--limits=memory=512Mi")
			}()
			waitFor(t, 20*time.Second, func() bool { return lockSessions("mysql-0") == "1" && lockSessions("mysql-1") == "1" },
				"a session holding the read lock in both servers")
			out, err := query("mysql-0", "SET SESSION lock_wait_timeout = 1; INSERT INTO shop.orders VALUES (4)")
			if err == nil || !strings.Contains(out, "Lock wait timeout exceeded") {
				t.Errorf("a write while the snapshots are cut: %v, %q; want it to wait on the read lock", err, out)
			}
			// Cut, not yet ready: the change is still waiting, the lock is gone.
			waitFor(t, 20*time.Second, func() bool { return lockSessions("mysql-0") == "0" && lockSessions("mysql-1") == "0" },
				"the read lock released in both servers once the snapshots are cut")
			if out, err := query("mysql-0", "SET SESSION lock_wait_timeout = 5; INSERT INTO shop.orders VALUES (5)"); err != nil {
				t.Errorf("a write after the cut: %v: %s", err, out)
			}
			select {
			case r := <-done:
				t.Fatalf("the change was decided (%v: %s) before the snapshots were ready; the lock was released only after", r.Err, r.Stderr)
			default:
			}
			r := <-done
			if r.Err != nil || !strings.Contains(r.Stderr, "snapgate: took snapshot set mysql-") {
				t.Fatalf("the change: %v\n%s", r.Err, r.Stderr)
			}
			c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/mysql", "--timeout=120s")
			framework.Eventually(t, 90*time.Second, "MariaDB in mysql-0 is back with its orders", func() error {
				got, err := query("mysql-0", "SELECT COUNT(*) FROM shop.orders")
				if err != nil || got != "4" {
					return fmt.Errorf("orders: %q, %v; want 4", got, err)
				}
				return nil
			})
		})
	}
}
