package framework

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Eventually calls check every 200 ms until it returns nil, and fails the test
// with check's last error once timeout has passed: for what a user would wait
// on by retrying (a server that is starting, a pod being replaced).
func Eventually(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not so after %s: %v", what, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Logs is a `kubectl logs -f` running in the background.
type Logs struct {
	done chan struct{}
	out  bytes.Buffer
}

// FollowLogs runs `kubectl logs -f` for a pod's container, as a user watching it
// would, until the container ends (or five minutes pass).
func (c *Cluster) FollowLogs(t testing.TB, ns, pod, container string) *Logs {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	cmd := exec.CommandContext(ctx, c.Bin("kubectl"), "-n", ns, "logs", "-f", pod, "-c", container)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.Kubeconfig)
	l := &Logs{done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = &l.out, &l.out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("kubectl logs -f %s: %v", pod, err)
	}
	go func() {
		_ = cmd.Wait()
		cancel()
		close(l.done)
	}()
	t.Cleanup(cancel)
	return l
}

// Wait returns what was logged once the container has ended.
func (l *Logs) Wait(t testing.TB, timeout time.Duration) string {
	t.Helper()
	select {
	case <-l.done:
		return l.out.String()
	case <-time.After(timeout):
		t.Fatalf("the container's log did not end within %s", timeout)
		return ""
	}
}

// LineIndex is the index of the first line of log from line from on that
// contains s, or -1.
func LineIndex(log, s string, from int) int {
	lines := strings.Split(log, "\n")
	for i := max(from, 0); i < len(lines); i++ {
		if strings.Contains(lines[i], s) {
			return i
		}
	}
	return -1
}

// KillInPod SIGKILLs the processes of the named program (the base name of
// its first argument) in a pod of the real node, as the OOM killer or a node
// fault would end them: nothing of their own shutdown runs, and the kubelet
// starts the container again. It returns how many it killed. The real node's
// containers are processes of this machine; a pod's are told apart by the
// HOSTNAME the runtime gives them, the pod's name.
func KillInPod(t testing.TB, pod, program string) int {
	t.Helper()
	serialOnly(t, "KillInPod")
	procs, _ := filepath.Glob("/proc/[0-9]*")
	killed := 0
	for _, dir := range procs {
		cmdline, err := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || filepath.Base(string(bytes.SplitN(cmdline, []byte{0}, 2)[0])) != program {
			continue
		}
		environ, err := os.ReadFile(filepath.Join(dir, "environ"))
		if err != nil || !slices.Contains(strings.Split(string(environ), "\x00"), "HOSTNAME="+pod) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(dir))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && err != syscall.ESRCH {
			t.Fatalf("kill %s (pid %d) of pod %s: %v", program, pid, pod, err)
		}
		killed++
	}
	return killed
}
