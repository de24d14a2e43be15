//go:build e2e

package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/snapgate/snapgate/e2e/framework"
)

// TestListShowsTheSetsOfAStatefulSet runs the snapgate binary as a user would
// (kubectl's flags, a kubeconfig) after two guarded changes.
func TestListShowsTheSetsOfAStatefulSet(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 3, nil)
	c.MustKubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	c.MustKubectl(t, "-n", ns, "scale", "statefulset/db", "--replicas=1")
	snapgate := func(args ...string) framework.Result {
		return c.Run(t, "", c.Bin("snapgate"), append(args, "--kubeconfig", c.Kubeconfig, "-n", ns)...)
	}

	r := snapgate("list", "sts/db")
	if r.Err != nil {
		t.Fatalf("snapgate list: %v\n%s", r.Err, r.Stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "SET") ||
		!strings.Contains(lines[1], "scale-down") || !strings.Contains(lines[1], "2/2") ||
		!strings.Contains(lines[2], "template") || !strings.Contains(lines[2], "3/3") || !strings.Contains(lines[2], "kwok-admin") {
		t.Fatalf("snapgate list printed:\n%s\nwant the scale-down set (2/2) above the template set (3/3)", r.Stdout)
	}

	r = snapgate("list", "sts/db", "-o", "json")
	var sets []struct {
		Name      string            `json:"name"`
		Reason    string            `json:"reason"`
		Ready     int               `json:"ready"`
		Snapshots map[string]string `json:"snapshotsByPVC"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &sets); err != nil || len(sets) != 2 {
		t.Fatalf("-o json: %v\n%s", err, r.Stdout)
	}
	// A scale's record reaches the StatefulSet after the scale is stored.
	c.MustKubectl(t, "-n", ns, "wait", "--for=jsonpath={.metadata.annotations.snapgate\\.io/last-reason}=scale-down", "statefulset/db", "--timeout=30s")
	if got := annotation(t, c, ns, "db", "snapgate.io/last-set"); got != sets[0].Name {
		t.Errorf("newest set = %s, want the one recorded on the StatefulSet, %s", sets[0].Name, got)
	}
	if len(sets[1].Snapshots) != 3 || sets[1].Snapshots["data-db-2"] == "" {
		t.Errorf("template set snapshots = %v, want one per PVC", sets[1].Snapshots)
	}

	if r := snapgate("list", "deploy/db"); r.Err == nil || !strings.Contains(r.Stderr, "snapgate guards StatefulSets") {
		t.Errorf("list deploy/db: err %v, stderr %q", r.Err, r.Stderr)
	}
}
