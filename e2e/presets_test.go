//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// TestPostgresPresetInEveryPostgresImage runs the postgres preset in each image
// it must work in, configured as their users configure them, and reads the
// CHECKPOINT from the server's own log before the change stopped it:
// the official image with a POSTGRES_USER of its own and a POSTGRES_DB (no role
// postgres exists then), the official postgres:17, and Bitnami's (uid 1001 with
// no passwd entry, md5 locally, the password only in a file).
func TestPostgresPresetInEveryPostgresImage(t *testing.T) {
	framework.Parallel(t)
	for _, tc := range []struct {
		name, image, container, mount, env, volumes string
		user, password                              string
	}{
		{
			name: "official postgres:15 with POSTGRES_USER app", image: "postgres:15", container: "postgres",
			mount: "/var/lib/postgresql/data", user: "app",
			env: `        - {name: POSTGRES_USER, value: app}
        - {name: POSTGRES_DB, value: shop}
        - name: POSTGRES_PASSWORD
          valueFrom: {secretKeyRef: {name: db, key: password}}
`,
		},
		{
			name: "official postgres:17", image: "postgres:17", container: "postgres", mount: "/var/lib/postgresql/data", user: "postgres",
			env: `        - name: POSTGRES_PASSWORD
          valueFrom: {secretKeyRef: {name: db, key: password}}
`,
		},
		{
			name: "Bitnami's postgresql:15, password from a file", image: "bitnami/postgresql:15", container: "postgresql",
			mount: "/bitnami/postgresql", user: "postgres", password: "s3cret-pw",
			env: `        - {name: POSTGRES_PASSWORD_FILE, value: /opt/bitnami/postgresql/secrets/password}
`,
			volumes: `        - {name: secret, mountPath: /opt/bitnami/postgresql/secrets, readOnly: true}
      volumes:
      - {name: secret, secret: {secretName: db}}
`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := framework.Connect(t)
			ns := c.Namespace(t)
			c.Apply(t, ns, "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: s3cret-pw\n---\n"+
				framework.GuardedSet{Name: "db", Replicas: 1, Annotations: map[string]string{"snapgate.io/hook-preset": "postgres"},
					PodSpec: "      containers:\n      - name: " + tc.container + "\n        image: " + tc.image + "\n        env:\n" + tc.env +
						"        volumeMounts:\n        - {name: data, mountPath: " + tc.mount + "}\n" + tc.volumes}.YAML())
			c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
			// What a user types to reach it: the image's superuser, with the
			// password where local auth asks for one.
			query := func(sql string) (string, error) {
				argv := []string{"-n", ns, "exec", "db-0", "--"}
				if tc.password != "" {
					argv = append(argv, "env", "PGPASSWORD="+tc.password)
				}
				r := c.Kubectl(t, append(argv, "psql", "-U", tc.user, "-d", "postgres", "-XAtq", "-c", sql)...)
				return strings.TrimSpace(r.Stdout + r.Stderr), r.Err
			}
			// Not the entrypoint's temporary server (see waitPostgres).
			framework.Eventually(t, 90*time.Second, "the server in db-0 accepts connections", func() error {
				out, err := query("SHOW listen_addresses")
				if err != nil {
					return fmt.Errorf("%v: %s", err, out)
				}
				if out != "*" {
					return fmt.Errorf("listen_addresses = %q: the entrypoint's temporary server", out)
				}
				return nil
			})
			logs := c.FollowLogs(t, ns, "db-0", tc.container)
			time.Sleep(500 * time.Millisecond)
			r := c.Kubectl(t, "-n", ns, "set", "resources", "statefulset/db", "-c", tc.container, "--limits=memory=512Mi")
			if r.Err != nil || !strings.Contains(r.Stderr, "snapgate: took snapshot set db-") {
				t.Fatalf("the change with the postgres preset: %v\n%s", r.Err, r.Stderr)
			}
			if log := logs.Wait(t, 2*time.Minute); !checkpointedBeforeShutdown(log) {
				t.Fatalf("want the preset's CHECKPOINT in the server's log before it was stopped; the log:\n%s", log)
			}
		})
	}
}

// TestPresetInAnImageWithoutItsClientIsRefusedNamingIt: the postgres preset on
// a StatefulSet whose container has no psql is denied, and the denial says so.
func TestPresetInAnImageWithoutItsClientIsRefusedNamingIt(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	c.Apply(t, ns, framework.GuardedSet{Name: "app", Replicas: 1, Annotations: map[string]string{"snapgate.io/hook-preset": "postgres"},
		PodSpec: "      containers:\n      - name: app\n        image: busybox:1.36\n        command: " + framework.SleepingApp +
			"\n        volumeMounts:\n        - {name: data, mountPath: /data}\n"}.YAML())
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/app", "--timeout=120s")
	r := c.Kubectl(t, "-n", ns, "set", "resources", "statefulset/app", "-c", "app", "--limits=memory=64Mi")
	if r.Err == nil || !strings.Contains(r.Stderr, "no psql in this container's PATH") {
		t.Fatalf("want the change denied naming psql; got %v: %s", r.Err, r.Stderr)
	}
}
