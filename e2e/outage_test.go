//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
	"github.com/snapgate/snapgate/snapshotter/presets"
)

// TestWhileSnapgateIsDown SIGKILLs snapgate while it holds two volumes frozen
// for an upgrade and keeps it down for two runs of a schedule, then starts it
// again. What users rely on through such an outage is checked in the one
// outage (each part alone would wait out its own):
//   - the upgrade fails closed, and the watchdogs the pre-hooks left in the
//     pods thaw the volumes within their bound, with no snapgate at all;
//   - the README's runbook: a guarded upgrade is refused, taking the
//     StatefulSet out of the guard lets it through, and unguarded and
//     kube-system StatefulSets never wait on snapgate;
//   - the schedule's missed runs are taken once when snapgate is back: one
//     set, of the latest run, told in one Event.
func TestWhileSnapgateIsDown(t *testing.T) {
	c := framework.Connect(t)
	frozenNS := c.Namespace(t)
	freezableSet(t, c, frozenNS, "30s")
	runbookNS := c.KwokNamespace(t)
	newGuarded(t, c, runbookNS, "db", 1, nil)
	c.Apply(t, runbookNS, strings.Replace(framework.StatefulSet("plain", 1, "postgres:16", nil), "snapgate.io/guard: enabled", "app: plain", 1))
	system := "e2e-" + runbookNS
	c.Apply(t, "kube-system", framework.StatefulSet(system, 0, "postgres:16", nil))
	t.Cleanup(func() { c.Kubectl(t, "-n", "kube-system", "delete", "statefulset", system) })
	scheduleNS := c.KwokNamespace(t)
	newGuarded(t, c, scheduleNS, "db", 2, nil)

	// The schedule is set, and snapgate killed, inside one minute: no run is
	// due before snapgate is down. Missed runs count from when the schedule
	// was set. The freeze before the kill takes a few seconds.
	if now := time.Now(); now.Second() > 30 {
		time.Sleep(time.Until(now.Truncate(time.Minute).Add(time.Minute + time.Second)))
	}
	set := time.Now().Truncate(time.Minute)
	c.MustKubectl(t, "-n", scheduleNS, "annotate", "statefulset/db", "snapgate.io/schedule=* * * * *", "snapgate.io/keep=1")
	frozenAt, upgrade := killWhileFrozen(t, c, frozenNS)
	if got := time.Now().Truncate(time.Minute); !got.Equal(set) {
		t.Fatalf("snapgate was killed at %s; the scheduled run of %s may have been taken", time.Now().Format(time.TimeOnly), got.Format(time.TimeOnly))
	}

	t.Run("the runbook way out", func(t *testing.T) {
		ns := runbookNS
		if r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17"); r.Err == nil || !strings.Contains(r.Stderr, "failed calling webhook") {
			t.Fatalf("a guarded upgrade with snapgate down: %v\n%s", r.Err, r.Stderr)
		}
		for _, change := range [][]string{
			{"-n", ns, "set", "image", "statefulset/plain", "db=postgres:17"},
			{"-n", ns, "scale", "statefulset/plain", "--replicas=0"},
			{"-n", "kube-system", "set", "image", "statefulset/" + system, "db=postgres:17"},
			{"-n", "kube-system", "delete", "statefulset", system},
		} {
			if r := c.Kubectl(t, change...); r.Err != nil {
				t.Errorf("kubectl %s with snapgate down: %v\n%s", strings.Join(change, " "), r.Err, r.Stderr)
			}
		}
		c.MustKubectl(t, "-n", ns, "label", "statefulset/db", "snapgate.io/guard-")
		c.MustKubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
		if got := image(t, c, ns, "db"); got != "postgres:17" {
			t.Fatalf("image = %s after unguarding", got)
		}
	})

	t.Run("the watchdogs thaw the volumes", func(t *testing.T) {
		ns := frozenNS
		since := awaitThaw(t, c, ns, frozenAt)
		t.Logf("thawed by the watchdogs %s after the freeze", since.Round(time.Second))
		if since < presets.FreezeBound-10*time.Second {
			t.Errorf("writes went through %s after the freeze, with snapgate dead; want them to wait for the watchdog (%s)", since, presets.FreezeBound)
		}
		// The upgrade whose snapshots were never cut failed closed: refused,
		// the template as it was.
		if r := <-upgrade; r.Err == nil {
			t.Errorf("the upgrade was admitted with snapgate killed before the cut: %s", r.Stdout)
		} else if !strings.Contains(r.Stderr, "snapgate") {
			t.Errorf("the upgrade failed with %q; want the API server's failed call to snapgate's webhook", r.Stderr)
		}
		if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "fz", "-o", `jsonpath={.spec.template.spec.containers[?(@.name=="app")].resources.limits.memory}`); got != "" {
			t.Errorf("the app's memory limit is %q after a refused upgrade; want none, as before", got)
		}
	})

	missed := set.Add(2 * time.Minute)
	time.Sleep(time.Until(missed.Add(3 * time.Second)))
	c.StartSnapgate(t)

	t.Run("missed runs are caught up once", func(t *testing.T) {
		ns := scheduleNS
		caughtUp := scheduledSet(t, c, ns, 30*time.Second, time.Time{})
		framework.Eventually(t, 30*time.Second, "the ScheduleMissed Event", func() error {
			ev := events(t, c, ns, "db")
			if want := "ScheduleMissed: Scheduled sets of * * * * * were missed while snapgate was not running (or could not take them); taking the one due at " + missed.UTC().Format(time.RFC3339) + ", once"; !strings.Contains(ev, want) {
				return fmt.Errorf("no Event %q:\n%s", want, ev)
			}
			return nil
		})
		ev := events(t, c, ns, "db")
		if got := strings.Count(ev, "ScheduleMissed:"); got != 1 {
			t.Errorf("%d ScheduleMissed Events, want one:\n%s", got, ev)
		}
		// Two runs missed, one set.
		if got := strings.Count(ev, "on its schedule"); got != 1 {
			t.Errorf("%d sets taken on schedule, want 1 (%s):\n%s", got, caughtUp.set, ev)
		}
		if sets := setsOf(c.Snapshots(t, ns, "db")); len(sets) != 1 {
			t.Errorf("sets %v, want only %s", sets, caughtUp.set)
		}
	})
}
