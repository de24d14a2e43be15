//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// A StatefulSet with snapgate.io/schedule gets a set at each run, of every
// replica, told in its Events and listed with reason schedule; a schedule
// that is no cron is refused when it is set.
func TestAScheduleTakesSetsAtItsTimes(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 2, nil)
	if r := c.Kubectl(t, "-n", ns, "annotate", "statefulset/db", "snapgate.io/schedule=every night"); r.Err == nil || !strings.Contains(r.Stderr, "five fields") {
		t.Fatalf("a schedule that is no cron: %v\n%s", r.Err, r.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", "snapgate.io/schedule=* * * * *")

	// The next minute's run, plus the time to take it.
	var set string
	framework.Eventually(t, 90*time.Second, "a set taken on schedule", func() error {
		for _, vs := range c.Snapshots(t, ns, "db") {
			if vs.Annotations["snapgate.io/reason"] == "schedule" && vs.Annotations["snapgate.io/requested-by"] == "snapgate schedule" {
				set = vs.Labels["snapgate.io/set"]
				return nil
			}
		}
		return fmt.Errorf("no snapshot with reason schedule")
	})
	framework.Eventually(t, 30*time.Second, "the set's Event", func() error {
		if ev := events(t, c, ns, "db"); !strings.Contains(ev, "SnapshotSetTaken: Took snapshot set "+set+" (2 snapshots, ready) on its schedule") {
			return fmt.Errorf("events:\n%s", ev)
		}
		return nil
	})
	r := c.Run(t, "", c.Bin("snapgate"), "list", "sts/db", "--kubeconfig", c.Kubeconfig, "-n", ns)
	if r.Err != nil || !strings.Contains(r.Stdout, set) || !strings.Contains(r.Stdout, "schedule") {
		t.Fatalf("snapgate list: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
}
