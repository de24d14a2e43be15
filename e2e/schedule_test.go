//go:build e2e

package e2e

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"

	"github.com/snapgate/snapgate/e2e/framework"
)

// A StatefulSet with snapgate.io/schedule gets a set at each run, of every
// replica, told in its Events and listed with reason schedule; snapgate.io/keep
// prunes the older sets. Runs missed while snapgate was down are caught up
// once when it is back: one set, of the latest run, and an Event that says
// so. A schedule that is no cron is refused when it is set.
func TestAScheduleTakesSetsAtItsTimes(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 2, nil)
	if r := c.Kubectl(t, "-n", ns, "annotate", "statefulset/db", "snapgate.io/schedule=every night"); r.Err == nil || !strings.Contains(r.Stderr, "five fields") {
		t.Fatalf("a schedule that is no cron: %v\n%s", r.Err, r.Stderr)
	}
	snapgate := func(args ...string) framework.Result {
		return c.Run(t, "", c.Bin("snapgate"), append(args, "--kubeconfig", c.Kubeconfig, "-n", ns)...)
	}
	if r := snapgate("snapshot", "sts/db"); r.Err != nil {
		t.Fatalf("snapgate snapshot: %v\n%s", r.Err, r.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", "snapgate.io/schedule=* * * * *", "snapgate.io/keep=1")

	// The next minute's run, plus the time to take it; the set on demand is
	// then one too many.
	first := scheduledSet(t, c, ns, 90*time.Second, time.Time{})
	framework.Eventually(t, 30*time.Second, "the set's Event, and the set on demand pruned", func() error {
		ev := events(t, c, ns, "db")
		if !strings.Contains(ev, "SnapshotSetTaken: Took snapshot set "+first.set+" (2 snapshots, ready) on its schedule") {
			return fmt.Errorf("no Event of set %s:\n%s", first.set, ev)
		}
		if sets := setsOf(c.Snapshots(t, ns, "db")); len(sets) != 1 {
			return fmt.Errorf("sets %v, want only %s (snapgate.io/keep: 1)", sets, first.set)
		}
		return nil
	})
	r := snapgate("list", "sts/db")
	if r.Err != nil || !strings.Contains(r.Stdout, first.set) || !strings.Contains(r.Stdout, "schedule") {
		t.Fatalf("snapgate list: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}

	// snapgate is down over the next two runs.
	if r := c.Run(t, "", filepath.Join(framework.RepoRoot(), "e2e", "stack", "snapgate.sh"), "down"); r.Err != nil {
		t.Fatalf("snapgate.sh down: %v\n%s", r.Err, r.Stderr)
	}
	t.Cleanup(func() { c.StartSnapgate(t) })
	// The latest run taken before snapgate stopped (a slow machine may have
	// taken the one after first too).
	last := scheduledSet(t, c, ns, 0, first.at.Add(-time.Second))
	missed := last.at.Truncate(time.Minute).Add(2 * time.Minute)
	time.Sleep(time.Until(missed.Add(3 * time.Second)))
	c.StartSnapgate(t)

	caughtUp := scheduledSet(t, c, ns, 30*time.Second, missed)
	framework.Eventually(t, 30*time.Second, "the ScheduleMissed Event, and the older set pruned", func() error {
		ev := events(t, c, ns, "db")
		if want := "ScheduleMissed: Scheduled sets of * * * * * were missed while snapgate was not running (or could not take them); taking the one due at " + missed.UTC().Format(time.RFC3339) + ", once"; !strings.Contains(ev, want) {
			return fmt.Errorf("no Event %q:\n%s", want, ev)
		}
		if sets := setsOf(c.Snapshots(t, ns, "db")); len(sets) != 1 {
			return fmt.Errorf("sets %v, want only %s", sets, caughtUp.set)
		}
		return nil
	})
	ev := events(t, c, ns, "db")
	if got := strings.Count(ev, "ScheduleMissed:"); got != 1 {
		t.Errorf("%d ScheduleMissed Events, want one:\n%s", got, ev)
	}
	// Two runs missed, one set: the first run's and the one caught up, no other.
	if got := strings.Count(ev, "on its schedule"); got != 2 {
		t.Errorf("%d sets taken on schedule, want 2 (%s and %s):\n%s", got, first.set, caughtUp.set, ev)
	}
}

// scheduled is a set taken on schedule and when it was taken.
type scheduled struct {
	set string
	at  time.Time
}

// scheduledSet waits until a set of sts/db is taken on schedule after after,
// and is ready; of several, the newest.
func scheduledSet(t *testing.T, c *framework.Cluster, ns string, within time.Duration, after time.Time) scheduled {
	t.Helper()
	var got scheduled
	framework.Eventually(t, within, "a set taken on schedule", func() error {
		got = scheduled{}
		for _, vs := range c.Snapshots(t, ns, "db") {
			at, _ := time.Parse(time.RFC3339Nano, vs.Annotations["snapgate.io/taken-at"])
			if vs.Annotations["snapgate.io/reason"] != "schedule" || vs.Annotations["snapgate.io/requested-by"] != "snapgate schedule" || !at.After(after) {
				continue
			}
			if vs.Status == nil || vs.Status.ReadyToUse == nil || !*vs.Status.ReadyToUse {
				return fmt.Errorf("snapshot %s not ready", vs.Name)
			}
			if at.After(got.at) {
				got = scheduled{set: vs.Labels["snapgate.io/set"], at: at}
			}
		}
		if got.set == "" {
			return fmt.Errorf("no snapshot with reason schedule taken after %s", after)
		}
		return nil
	})
	return got
}

// setsOf is the sets the snapshots belong to.
func setsOf(snaps []snapv1.VolumeSnapshot) []string {
	var sets []string
	for _, vs := range snaps {
		if s := vs.Labels["snapgate.io/set"]; !slices.Contains(sets, s) {
			sets = append(sets, s)
		}
	}
	return sets
}
