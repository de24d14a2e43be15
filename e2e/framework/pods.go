package framework

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"strings"
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
