//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// TestWhenTheAPIServerRestarts SIGKILLs the API server and starts it again,
// once while snapgate waits for an upgrade's set to be ready, and once while a
// rollback takes its safety set. Each time snapgate loses every connection
// and watch it has, and the admission request it is deciding is gone with the
// API server that sent it.
func TestWhenTheAPIServerRestarts(t *testing.T) {
	c := framework.Connect(t)

	t.Run("mid-set", func(t *testing.T) {
		ns := c.Namespace(t)
		class := c.SnapshotClassForTest(t, ns, "slow", map[string]string{"readyDelay": "5s"})
		hooked(t, c, ns, map[string]string{
			"snapgate.io/snapshot-class": class,
			"snapgate.io/pre-hook":       `["sh","-c","echo $HOSTNAME > /data/quiesced.txt"]`,
			"snapgate.io/post-hook":      `["sh","-c","rm /data/quiesced.txt && echo $HOSTNAME > /data/thawed.txt"]`,
		})
		upgrade := make(chan framework.Result, 1)
		go func() { upgrade <- change(t, c, ns) }()
		framework.Eventually(t, 30*time.Second, "the upgrade's three snapshots created", func() error {
			if n := len(c.Snapshots(t, ns, "db")); n != 3 {
				return fmt.Errorf("%d snapshots", n)
			}
			return nil
		})
		c.RestartAPIServer(t)

		// The user is told: the change was neither admitted nor stored.
		if r := <-upgrade; r.Err == nil {
			t.Fatalf("the upgrade succeeded although the API server deciding it died:\n%s", r.Stderr)
		} else {
			t.Logf("the upgrade, as the user saw it: %v: %s", r.Err, strings.TrimSpace(r.Stderr))
		}
		if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "db", "-o", "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}"); got != "" {
			t.Fatalf("memory limit = %q although the change failed; want the template unchanged", got)
		}
		framework.Eventually(t, time.Minute, "every pod thawed", func() error {
			for _, pod := range []string{"db-0", "db-1", "db-2"} {
				if got := files(t, c, ns, pod); got != "thawed.txt\n" {
					return fmt.Errorf("%s holds %q", pod, got)
				}
			}
			return nil
		})
		var set string
		framework.Eventually(t, time.Minute, "the set cut before the restart ready", func() error {
			snaps := c.Snapshots(t, ns, "db")
			for _, s := range snaps {
				if s.Status == nil || s.Status.ReadyToUse == nil || !*s.Status.ReadyToUse {
					return fmt.Errorf("snapshot %s is not ready", s.Name)
				}
				set = s.Labels["snapgate.io/set"]
			}
			if len(snaps) != 3 {
				return fmt.Errorf("%d snapshots", len(snaps))
			}
			return nil
		})

		// The user's retry is admitted on the set there is: no second one.
		r := change(t, c, ns)
		if r.Err != nil {
			t.Fatalf("the retried upgrade: %v\n%s", r.Err, r.Stderr)
		}
		if !strings.Contains(r.Stderr, "took snapshot set "+set) {
			t.Errorf("the retry says %q; want the set %s cut before the restart", r.Stderr, set)
		}
		c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
		snaps := c.Snapshots(t, ns, "db")
		for _, s := range snaps {
			if s.Labels["snapgate.io/set"] != set {
				t.Errorf("snapshot %s is of set %s; want only set %s", s.Name, s.Labels["snapgate.io/set"], set)
			}
		}
		if len(snaps) != 3 {
			t.Errorf("%d snapshots after the retry: %v; want the 3 of set %s", len(snaps), framework.SnapshotNames(snaps), set)
		}
		for _, pod := range []string{"db-0", "db-1", "db-2"} {
			if got := files(t, c, ns, pod); got != "thawed.txt\n" {
				t.Errorf("%s holds %q after the retry; want it thawed", pod, got)
			}
		}
	})

	t.Run("mid-rollback", func(t *testing.T) {
		rollbackInterrupted(t, c, c.Namespace(t), func() { c.RestartAPIServer(t) })
	})
}
