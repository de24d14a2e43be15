//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// An upgrade of a StatefulSet that asks snapgate.io/wait-for: cut is admitted
// once its set is cut; the set is followed after that, and the StatefulSet's
// Events tell when it is ready.
func TestASetAdmittedAtCutIsToldReadyWhenItIs(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	class := c.SnapshotClassForTest(t, ns, "uploading", map[string]string{"readyDelay": "5s"})
	newGuarded(t, c, ns, "db", 2, map[string]string{"snapgate.io/snapshot-class": class, "snapgate.io/wait-for": "cut"})

	c.MustKubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	set := annotation(t, c, ns, "db", "snapgate.io/last-set")
	if set == "" {
		t.Fatal("the upgrade recorded no set")
	}
	if ready := readyIn(t, c, ns, set); ready == 2 {
		t.Fatalf("set %s was ready when the upgrade was admitted; the class's readyDelay should have kept it uploading", set)
	}
	framework.Eventually(t, time.Minute, "a SnapshotSetReady Event for set "+set, func() error {
		if ev := events(t, c, ns, "db"); !strings.Contains(ev, "SnapshotSetReady: Snapshot set "+set+" is ready (2 snapshots)") {
			return fmt.Errorf("events:\n%s", ev)
		}
		return nil
	})
	if n := readyIn(t, c, ns, set); n != 2 {
		t.Fatalf("told ready with %d of 2 snapshots ready", n)
	}
}

// A set admitted at cut that the CSI driver never readies (an upload stuck
// for hours) is told overdue once the ready deadline passes: a Warning Event
// on the StatefulSet, the metric, and `snapgate list`.
func TestASetNeverReadyIsToldOverdue(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	class := c.SnapshotClassForTest(t, ns, "stuck", map[string]string{"readyDelay": "1h"})
	newGuarded(t, c, ns, "db", 1, map[string]string{"snapgate.io/snapshot-class": class, "snapgate.io/wait-for": "cut"})
	before := c.Metric(t, "snapgate_sets_followed_total", `finding="overdue"`)

	c.MustKubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	set := annotation(t, c, ns, "db", "snapgate.io/last-set")
	deadline := c.ReadyDeadline(t)
	framework.Eventually(t, deadline+time.Minute, "a SnapshotSetOverdue Event for set "+set, func() error {
		if ev := events(t, c, ns, "db"); !strings.Contains(ev, "SnapshotSetOverdue: Snapshot set "+set+" is not ready") ||
			!strings.Contains(ev, "(0 of 1 snapshot ready; ready deadline "+deadline.String()+")") {
			return fmt.Errorf("events:\n%s", ev)
		}
		return nil
	})
	if after := c.Metric(t, "snapgate_sets_followed_total", `finding="overdue"`); after != before+1 {
		t.Errorf("snapgate_sets_followed_total{finding=\"overdue\"} went from %d to %d, want one more", before, after)
	}
	r := c.Run(t, "", c.Bin("snapgate"), "list", "sts/db", "--kubeconfig", c.Kubeconfig, "-n", ns)
	if r.Err != nil || !strings.Contains(r.Stdout, set) || !strings.Contains(r.Stdout, "0/1 (overdue)") {
		t.Fatalf("snapgate list: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
}

// readyIn is how many snapshots of a set are readyToUse.
func readyIn(t *testing.T, c *framework.Cluster, ns, set string) int {
	t.Helper()
	out := c.MustKubectl(t, "-n", ns, "get", "volumesnapshots", "-l", "snapgate.io/set="+set, "-o", "jsonpath={range .items[*]}{.status.readyToUse}{\"\\n\"}{end}")
	return strings.Count(out, "true")
}
