package presets

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeMongo puts a mongosh on PATH that keeps fsyncLock's lock count in a
// file and answers as MongoDB does: fsyncLock counts up, fsyncUnlock counts
// down and fails with "fsyncUnlock called when not locked" at zero. No MongoDB
// server can be installed on the build machines (it is not in Debian's
// archive), so this checks the preset's scripts, not MongoDB.
type fakeMongo struct {
	t     *testing.T
	env   []string
	state string
}

func newFakeMongo(t *testing.T, env ...string) *fakeMongo {
	dir := t.TempDir()
	script := `#!/bin/sh
echo "$*" >>"$STATE/args"
n=$(cat "$STATE/count" 2>/dev/null || echo 0)
for a; do eval=$a; done
case "$eval" in
'db.fsyncLock()') echo $((n+1)) >"$STATE/count"; echo "{ info: 'now locked against writes', lockCount: $((n+1)), ok: 1 }";;
'db.fsyncUnlock()')
  [ "$n" -gt 0 ] || { echo "MongoServerError: fsyncUnlock called when not locked" >&2; exit 1; }
  echo $((n-1)) >"$STATE/count";;
*) echo "unexpected: $eval" >&2; exit 2;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "mongosh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = exec.Command("pkill", "-f", "snapgate-mongodb-watchdog").Run() })
	return &fakeMongo{t: t, state: dir,
		env: append(append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "STATE="+dir, "TMPDIR="+dir), env...)}
}

func (f *fakeMongo) run(argv []string, bound string) (string, error) {
	argv = slices.Clone(argv)
	if i := slices.Index(argv, "60"); i > 0 {
		argv[i] = bound
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = f.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (f *fakeMongo) locks() string {
	b, err := os.ReadFile(filepath.Join(f.state, "count"))
	if os.IsNotExist(err) {
		return "0"
	}
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestMongoDBPresetScripts(t *testing.T) {
	lock, unlock := All["mongodb"].Pre, All["mongodb"].Post

	t.Run("lock then unlock, twice over", func(t *testing.T) {
		f := newFakeMongo(t)
		if out, err := f.run(lock, "60"); err != nil || f.locks() != "1" {
			t.Fatalf("lock: %v: %s; count %s", err, out, f.locks())
		}
		if out, err := f.run(unlock, ""); err != nil || f.locks() != "0" {
			t.Fatalf("unlock: %v: %s; count %s", err, out, f.locks())
		}
		// Again (a restarted snapgate ran what a dead one owed): nothing of
		// snapgate's is locked, and no one else's lock is touched.
		if out, err := f.run(unlock, ""); err != nil {
			t.Fatalf("second unlock: %v: %s", err, out)
		}
		if b, _ := os.ReadFile(filepath.Join(f.state, "args")); strings.Count(string(b), "fsyncUnlock") != 1 {
			t.Fatalf("mongosh ran:\n%s\nwant one fsyncUnlock", b)
		}
	})

	t.Run("the watchdog unlocks when snapgate never does", func(t *testing.T) {
		f := newFakeMongo(t)
		if out, err := f.run(lock, "1"); err != nil {
			t.Fatalf("lock: %v: %s", err, out)
		}
		deadline := time.Now().Add(10 * time.Second)
		for f.locks() != "0" {
			if time.Now().After(deadline) {
				t.Fatalf("still locked 10 s after a 1 s bound")
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("an earlier lock's watchdog leaves a later lock alone", func(t *testing.T) {
		f := newFakeMongo(t)
		for _, step := range []struct {
			argv  []string
			bound string
		}{{lock, "1"}, {unlock, ""}, {lock, "60"}} {
			if out, err := f.run(step.argv, step.bound); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
		}
		time.Sleep(2 * time.Second)
		if f.locks() != "1" {
			t.Fatalf("lock count %s; the first lock's watchdog unlocked the second", f.locks())
		}
	})

	t.Run("the official image's root user", func(t *testing.T) {
		f := newFakeMongo(t, "MONGO_INITDB_ROOT_USERNAME=admin", "MONGO_INITDB_ROOT_PASSWORD=s3cret")
		if out, err := f.run(lock, "60"); err != nil {
			t.Fatalf("lock: %v: %s", err, out)
		}
		b, _ := os.ReadFile(filepath.Join(f.state, "args"))
		if !strings.Contains(string(b), "--quiet -u admin -p s3cret --authenticationDatabase admin --eval db.fsyncLock()") {
			t.Fatalf("mongosh ran with %q", b)
		}
	})

	t.Run("the root user's name and password from files", func(t *testing.T) {
		dir := t.TempDir()
		for name, v := range map[string]string{"user": "admin", "pw": "from-file"} {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		f := newFakeMongo(t, "MONGO_INITDB_ROOT_USERNAME_FILE="+filepath.Join(dir, "user"), "MONGO_INITDB_ROOT_PASSWORD_FILE="+filepath.Join(dir, "pw"))
		if out, err := f.run(lock, "60"); err != nil {
			t.Fatalf("lock: %v: %s", err, out)
		}
		b, _ := os.ReadFile(filepath.Join(f.state, "args"))
		if !strings.Contains(string(b), "--quiet -u admin -p from-file --authenticationDatabase admin") {
			t.Fatalf("mongosh ran with %q", b)
		}
	})
}

// TestHoldingPresetsFailClearlyWithoutAWritableTmpdir: a container whose
// TMPDIR cannot be written (a read-only root filesystem) fails the pre-hook,
// naming the file, before it locks or freezes anything.
func TestHoldingPresetsFailClearlyWithoutAWritableTmpdir(t *testing.T) {
	for _, name := range []string{"mysql", "mongodb", "fsfreeze"} {
		argv := slices.Clone(All[name].Pre)
		if All[name].FreezesMounts {
			argv = append(argv, t.TempDir())
		}
		// Stand-in clients that would lock if they were reached.
		clients := t.TempDir()
		for _, c := range []string{"mongosh", "mariadb"} {
			if err := os.WriteFile(filepath.Join(clients, c), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		// The file comes first: nothing is locked or frozen without it.
		cmd.Env = []string{"PATH=" + clients + ":/usr/bin:/bin:/usr/sbin:/sbin", "TMPDIR=/proc/snapgate-test"}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "cannot create /proc/snapgate-test/snapgate-") {
			t.Errorf("%s: %v, %q; want a failure naming the file it could not create", name, err, out)
		}
	}
}
