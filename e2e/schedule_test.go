//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"

	"github.com/snapgate/snapgate/e2e/framework"
)

// TestAScheduleTakesSetsAtItsTimes: snapgate.io/schedule takes a set on its
// cron, of every replica, told in its Events and listed with reason schedule;
// snapgate.io/keep prunes the older sets. A schedule that is no cron is
// refused when it is set.
func TestAScheduleTakesSetsAtItsTimes(t *testing.T) {
	framework.Parallel(t)
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
