package presets

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeMySQL puts a stand-in client named name on PATH: asked for the lock, it
// prints session id 42, then "locked" unless $STATE/blocked exists (another
// session's long query holds the tables), then sleeps as DO SLEEP would; every
// call is recorded with the MYSQL_PWD it was given. The real servers (MariaDB
// 10.11 and 11, in the official images' shape) are tested on the stack's node.
func fakeMySQL(t *testing.T, name string) (env []string, state string) {
	t.Helper()
	dir := t.TempDir()
	script := `#!/bin/sh
echo "$0 $* MYSQL_PWD=${MYSQL_PWD:-}" >>"$STATE/calls"
for a; do sql=$a; done
case "$sql" in
*"FLUSH TABLES"*) echo 42; [ -e "$STATE/blocked" ] || echo locked; exec sleep 30;;
"KILL 42") touch "$STATE/killed";;
esac
`
	if err := os.WriteFile(filepath.Join(dir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// Only the tools the scripts use, so that a client on this machine is not found.
	tools := t.TempDir()
	for _, tool := range []string{"sh", "cat", "rm", "sleep", "touch"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(p, filepath.Join(tools, tool)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = exec.Command("pkill", "-f", "^sleep 30$").Run() })
	return []string{"PATH=" + dir + ":" + tools, "STATE=" + dir, "TMPDIR=" + dir}, dir
}

func runScript(t *testing.T, argv, env []string, timeout time.Duration) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = env
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestMySQLPresetScripts(t *testing.T) {
	lock, unlock := All["mysql"].Pre, All["mysql"].Post

	for name, tc := range map[string]struct {
		client string
		env    []string
		pw     string
	}{
		"mariadb 11 (no mysql command) with MARIADB_ROOT_PASSWORD":    {client: "mariadb", env: []string{"MARIADB_ROOT_PASSWORD=pw"}, pw: "pw"},
		"MySQL's image (no mariadb command) with MYSQL_ROOT_PASSWORD": {client: "mysql", env: []string{"MYSQL_ROOT_PASSWORD=pw"}, pw: "pw"},
	} {
		t.Run(name, func(t *testing.T) {
			env, state := fakeMySQL(t, tc.client)
			if out, err := runScript(t, lock, append(env, tc.env...), 10*time.Second); err != nil {
				t.Fatalf("lock: %v: %s", err, out)
			}
			if out, err := runScript(t, unlock, append(env, tc.env...), 10*time.Second); err != nil {
				t.Fatalf("unlock: %v: %s", err, out)
			}
			calls, _ := os.ReadFile(filepath.Join(state, "calls"))
			if !strings.Contains(string(calls), "/"+tc.client+" -uroot") || !strings.Contains(string(calls), "MYSQL_PWD="+tc.pw) {
				t.Fatalf("the client was called as:\n%s", calls)
			}
			if _, err := os.Stat(filepath.Join(state, "killed")); err != nil {
				t.Fatalf("the post-hook did not end session 42: %v\n%s", err, calls)
			}
		})
	}

	t.Run("a root password from a file", func(t *testing.T) {
		env, state := fakeMySQL(t, "mariadb")
		secret := filepath.Join(state, "pw")
		if err := os.WriteFile(secret, []byte("from-file"), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := runScript(t, lock, append(env, "MARIADB_ROOT_PASSWORD_FILE="+secret), 10*time.Second); err != nil {
			t.Fatalf("lock: %v: %s", err, out)
		}
		calls, _ := os.ReadFile(filepath.Join(state, "calls"))
		if !strings.Contains(string(calls), "-uroot") || !strings.Contains(string(calls), "MYSQL_PWD=from-file") {
			t.Fatalf("the client was called as:\n%s", calls)
		}
	})

	t.Run("the session is ended even when the pre-hook gave up waiting for the lock", func(t *testing.T) {
		env, state := fakeMySQL(t, "mariadb")
		if err := os.WriteFile(filepath.Join(state, "blocked"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		// snapgate's hook timeout ends the pre-hook while FLUSH TABLES waits.
		if _, err := runScript(t, lock, env, time.Second); err == nil {
			t.Fatal("the pre-hook returned while the lock was not held")
		}
		if out, err := runScript(t, unlock, env, 10*time.Second); err != nil {
			t.Fatalf("unlock: %v: %s", err, out)
		}
		if _, err := os.Stat(filepath.Join(state, "killed")); err != nil {
			t.Fatal("the post-hook did not end the session still waiting for the lock")
		}
	})

	t.Run("a container with neither client is told so", func(t *testing.T) {
		out, err := runScript(t, lock, []string{"PATH=" + t.TempDir(), "TMPDIR=" + t.TempDir()}, 10*time.Second)
		if err == nil || !strings.Contains(out, "neither mariadb nor mysql is in this container's PATH") {
			t.Fatalf("want a failure naming the clients, got %v: %s", err, out)
		}
	})
}

// TestMySQLPresetIsBounded: the lock's session ends by itself after the bound,
// and the post-hook ends it by its id, tolerating one that has ended already.
func TestMySQLPresetIsBounded(t *testing.T) {
	if !strings.Contains(mysqlLock, "SELECT CONNECTION_ID(); FLUSH TABLES WITH READ LOCK; SELECT 'locked'; DO SLEEP(60)") {
		t.Errorf("the lock's session is not bounded by %s:\n%s", MySQLLockBound, mysqlLock)
	}
	if !strings.Contains(mysqlUnlock, `KILL $id`) || !strings.Contains(mysqlUnlock, "Unknown thread id") {
		t.Errorf("the post-hook does not end the session:\n%s", mysqlUnlock)
	}
}
