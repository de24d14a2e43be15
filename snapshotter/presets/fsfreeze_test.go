package presets

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeFreezer puts an fsfreeze on PATH that keeps each path's state in a file
// and answers as util-linux's does: EBUSY for a second freeze, EINVAL for a
// thaw of what is not frozen. A path whose name contains "readonly" refuses.
type fakeFreezer struct {
	t                *testing.T
	dir, state, vols string
	env              []string
}

// p is the path of a volume directory that exists.
func (f *fakeFreezer) p(name string) string {
	p := filepath.Join(f.vols, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		f.t.Fatal(err)
	}
	return p
}

func newFakeFreezer(t *testing.T) *fakeFreezer {
	dir := t.TempDir()
	f := &fakeFreezer{t: t, dir: dir, state: filepath.Join(dir, "state"), vols: t.TempDir()}
	script := `#!/bin/sh
s="$STATE/$(printf %s "$2" | cksum | cut -d' ' -f1)"
echo "$1 $2" >>"$STATE/log"
case "$1" in
--freeze)
  case "$2" in *readonly*) echo "fsfreeze: $2: freeze failed: Operation not permitted" >&2; exit 1;; esac
  [ -e "$s" ] && { echo "fsfreeze: $2: freeze failed: Device or resource busy" >&2; exit 1; }
  printf %s "$2" >"$s";;
--unfreeze)
  [ -e "$s" ] || { echo "fsfreeze: $2: unfreeze failed: Invalid argument" >&2; exit 1; }
  rm "$s";;
esac
`
	if err := os.MkdirAll(f.state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fsfreeze"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	// The watchdogs the scripts leave behind end with the test.
	t.Cleanup(func() { _ = exec.Command("pkill", "-f", "snapgate-fsfreeze-watchdog [0-9]+ "+f.dir).Run() })
	f.env = append(os.Environ(), "PATH="+dir+":"+os.Getenv("PATH"), "STATE="+f.state, "TMPDIR="+dir)
	return f
}

// run runs a preset's argv with the bound replaced, as exec in the pod would.
func (f *fakeFreezer) run(argv []string, bound string, paths ...string) (string, error) {
	argv = slices.Clone(argv)
	if argv[len(argv)-1] == "60" {
		argv[len(argv)-1] = bound
	}
	cmd := exec.Command(argv[0], slices.Concat(argv[1:], paths)...)
	cmd.Env = f.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// frozen are the paths frozen now.
func (f *fakeFreezer) frozen() []string {
	entries, err := os.ReadDir(f.state)
	if err != nil {
		f.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() != "log" {
			b, err := os.ReadFile(filepath.Join(f.state, e.Name()))
			if errors.Is(err, fs.ErrNotExist) {
				// A watchdog thawed it between the listing and the read.
				continue
			}
			if err != nil {
				f.t.Fatal(err)
			}
			out = append(out, string(b))
		}
	}
	slices.Sort(out)
	return out
}

func TestFSFreezeScripts(t *testing.T) {
	freeze, thaw := All["fsfreeze"].Pre, All["fsfreeze"].Post

	t.Run("freeze then thaw", func(t *testing.T) {
		f := newFakeFreezer(t)
		if out, err := f.run(freeze, "60", f.p("a"), f.p("b")); err != nil {
			t.Fatalf("freeze: %v: %s", err, out)
		}
		if got := f.frozen(); !slices.Equal(got, []string{f.p("a"), f.p("b")}) {
			t.Fatalf("frozen = %v", got)
		}
		if out, err := f.run(thaw, "", f.p("a"), f.p("b")); err != nil {
			t.Fatalf("thaw: %v: %s", err, out)
		}
		if got := f.frozen(); len(got) != 0 {
			t.Fatalf("still frozen after the thaw: %v", got)
		}
		// A second thaw (the watchdog or a restarted snapgate came first) is fine.
		if out, err := f.run(thaw, "", f.p("a"), f.p("b")); err != nil {
			t.Fatalf("thaw of what is not frozen: %v: %s", err, out)
		}
	})

	t.Run("a failed freeze thaws what it froze", func(t *testing.T) {
		f := newFakeFreezer(t)
		out, err := f.run(freeze, "60", f.p("a"), f.p("readonly"), f.p("c"))
		if err == nil || !strings.Contains(out, "Operation not permitted") {
			t.Fatalf("freeze = %v, %q; want the failure and fsfreeze's reason", err, out)
		}
		if got := f.frozen(); len(got) != 0 {
			t.Fatalf("left frozen: %v", got)
		}
	})

	t.Run("the watchdog thaws when snapgate never does", func(t *testing.T) {
		f := newFakeFreezer(t)
		if out, err := f.run(freeze, "1", f.p("a"), f.p("b")); err != nil {
			t.Fatalf("freeze: %v: %s", err, out)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(f.frozen()) > 0 {
			if time.Now().After(deadline) {
				t.Fatalf("still frozen 10 s after a 1 s bound: %v", f.frozen())
			}
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("an earlier freeze's watchdog leaves a later freeze alone", func(t *testing.T) {
		f := newFakeFreezer(t)
		if out, err := f.run(freeze, "1", f.p("a")); err != nil {
			t.Fatalf("freeze: %v: %s", err, out)
		}
		if out, err := f.run(thaw, "", f.p("a")); err != nil {
			t.Fatalf("thaw: %v: %s", err, out)
		}
		if out, err := f.run(freeze, "60", f.p("a")); err != nil {
			t.Fatalf("second freeze: %v: %s", err, out)
		}
		time.Sleep(2 * time.Second) // past the first watchdog's bound
		if got := f.frozen(); !slices.Equal(got, []string{f.p("a")}) {
			t.Fatalf("frozen = %v; the first freeze's watchdog thawed the second", got)
		}
		if out, err := f.run(thaw, "", f.p("a")); err != nil {
			t.Fatalf("thaw: %v: %s", err, out)
		}
	})
}

// TestFSFreezePresetSaysWhatTheContainerLacks: a hook container without
// fsfreeze, or without CAP_SYS_ADMIN (not privileged), is refused with what to
// change, before anything is frozen.
func TestFSFreezePresetSaysWhatTheContainerLacks(t *testing.T) {
	pre := append(slices.Clone(All["fsfreeze"].Pre), t.TempDir())

	t.Run("no fsfreeze", func(t *testing.T) {
		cmd := exec.Command(pre[0], pre[1:]...)
		cmd.Env = []string{"PATH=" + t.TempDir(), "TMPDIR=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "no fsfreeze in this container's PATH") {
			t.Fatalf("want a failure naming fsfreeze, got %v: %s", err, out)
		}
	})

	t.Run("no CAP_SYS_ADMIN", func(t *testing.T) {
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			t.Fatalf("setpriv (util-linux) is needed to drop the capability: %v", err)
		}
		// Dropped from the bounding set, root's next exec runs without it, as a
		// container that is not privileged does.
		cmd := exec.Command(setpriv, append([]string{"--bounding-set=-sys_admin", "--inh-caps=-sys_admin"}, pre...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin:/usr/sbin:/sbin", "TMPDIR=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lacks CAP_SYS_ADMIN") || !strings.Contains(string(out), "privileged") {
			t.Fatalf("want a failure naming CAP_SYS_ADMIN and the fix, got %v: %s", err, out)
		}
	})
}
