//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/snapgate/snapgate/e2e/framework"
)

// TestTheRunbookWayOutWhileSnapgateIsDown follows the README's runbook: with
// snapgate killed (its webhook configurations left behind), a guarded upgrade
// is refused, taking the StatefulSet out of the guard goes through, and then
// the upgrade does. Only guarded StatefulSets wait on snapgate: an unguarded
// one is upgraded and scaled, and kube-system's never reach it, labelled or not.
func TestTheRunbookWayOutWhileSnapgateIsDown(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 1, nil)
	c.Apply(t, ns, strings.Replace(framework.StatefulSet("plain", 1, "postgres:16", nil), "snapgate.io/guard: enabled", "app: plain", 1))
	system := "e2e-" + ns
	c.Apply(t, "kube-system", framework.StatefulSet(system, 0, "postgres:16", nil))
	t.Cleanup(func() { c.Kubectl(t, "-n", "kube-system", "delete", "statefulset", system) })
	c.KillSnapgate(t)
	t.Cleanup(func() { c.StartSnapgate(t) })

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
}
