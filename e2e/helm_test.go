//go:build e2e

package e2e

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/snapgate/snapgate/e2e/framework"
)

// TestHelmUpgradeIsSnapshotted upgrades a release with the real Helm: the
// upgrade goes through snapgate like any other client's.
func TestHelmUpgradeIsSnapshotted(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	chart := filepath.Join(framework.RepoRoot(), "e2e", "testdata", "guarded-db")
	helm := func(args ...string) framework.Result {
		return c.Run(t, "", c.Bin("helm"), append(args, "--namespace", ns, "--kubeconfig", c.Kubeconfig)...)
	}

	if r := helm("install", "shop", chart, "--wait", "--timeout", "90s"); r.Err != nil {
		t.Fatalf("helm install: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	if snaps := c.Snapshots(t, ns, "shop-db"); len(snaps) != 0 {
		t.Fatalf("an install took snapshots: %v", framework.SnapshotNames(snaps))
	}

	r := helm("upgrade", "shop", chart, "--set", "image.tag=17", "--wait", "--timeout", "90s")
	if r.Err != nil {
		t.Fatalf("helm upgrade: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	snaps := c.Snapshots(t, ns, "shop-db")
	if len(snaps) != 2 || !strings.HasPrefix(snaps[0].Name, "data-shop-db-0-") || !strings.HasPrefix(snaps[1].Name, "data-shop-db-1-") {
		t.Fatalf("snapshots after helm upgrade = %v, want one per replica", framework.SnapshotNames(snaps))
	}
	set := snaps[0].Labels["snapgate.io/set"]
	if out := r.Stdout + r.Stderr; !strings.Contains(out, "snapgate: took snapshot set "+set) {
		t.Errorf("helm upgrade printed %q; want snapgate's warning naming set %s", out, set)
	}
	if got := image(t, c, ns, "shop-db"); got != "postgres:17" {
		t.Fatalf("image = %q after helm upgrade", got)
	}
}
