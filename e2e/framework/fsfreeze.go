package framework

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FreezableVolume gives a pod's volume a filesystem of its own that can be
// frozen: an ext4 image, loop-mounted on the volume's directory (which is
// where kubectl exec into the pod runs, see execbinder). The hostpath volumes
// are directories of the host's filesystem, and freezing that would freeze the
// machine. When the test ends it is thawed and unmounted. It returns the
// directory. Loop-mounting needs root, as the CI machines run tests.
func (c *Cluster) FreezableVolume(t testing.TB, ns, pod string) string {
	t.Helper()
	dir := strings.TrimSpace(c.MustKubectl(t, "-n", ns, "get", "pod", pod, "-o", `jsonpath={.metadata.annotations.stack\.snapgate\.io/exec-dir}`))
	if dir == "" {
		t.Fatalf("pod %s/%s has no exec directory", ns, pod)
	}
	img := filepath.Join(t.TempDir(), "fs.img")
	f, err := os.Create(img)
	if err == nil {
		err = f.Truncate(64 << 20)
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	host(t, "mkfs.ext4", "-q", "-F", img)
	if out, err := exec.Command(sbin("mount"), "-o", "loop", img, dir).CombinedOutput(); err != nil {
		t.Fatalf("loop-mount a filesystem on %s (this needs root, and mkfs.ext4 and losetup from `make deps`): %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		// Thawed first: a frozen filesystem would hang its unmount, and the stack.
		_ = exec.Command(sbin("fsfreeze"), "--unfreeze", dir).Run()
		var out []byte
		var err error
		for range 50 {
			if out, err = exec.Command(sbin("umount"), dir).CombinedOutput(); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond) // a server in the pod may still have it open
		}
		t.Errorf("unmount %s: %v: %s", dir, err, out)
		_ = exec.Command(sbin("umount"), "-l", dir).Run()
	})
	return dir
}

// Frozen reports whether the filesystem at dir is frozen, as the kernel says:
// a second freeze of a frozen filesystem fails with EBUSY. One that was not
// frozen is thawed again at once; call it only when no one else may be
// freezing dir.
func Frozen(t testing.TB, dir string) bool {
	t.Helper()
	out, err := exec.Command(sbin("fsfreeze"), "--freeze", dir).CombinedOutput()
	if err == nil {
		host(t, "fsfreeze", "--unfreeze", dir)
		return false
	}
	if strings.Contains(string(out), "Device or resource busy") {
		return true
	}
	t.Fatalf("fsfreeze --freeze %s: %v: %s", dir, err, out)
	return false
}

// sbin finds a system tool on PATH, or in sbin, which a user's PATH may lack.
func sbin(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); isExecutable(p) {
			return p
		}
	}
	return name
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

func host(t testing.TB, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(sbin(name), args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}
