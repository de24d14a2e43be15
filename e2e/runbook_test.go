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
// the upgrade does.
func TestTheRunbookWayOutWhileSnapgateIsDown(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 1, nil)
	c.KillSnapgate(t)
	t.Cleanup(func() { c.StartSnapgate(t) })

	if r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17"); r.Err == nil || !strings.Contains(r.Stderr, "failed calling webhook") {
		t.Fatalf("a guarded upgrade with snapgate down: %v\n%s", r.Err, r.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "label", "statefulset/db", "snapgate.io/guard-")
	c.MustKubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	if got := image(t, c, ns, "db"); got != "postgres:17" {
		t.Fatalf("image = %s after unguarding", got)
	}
}
