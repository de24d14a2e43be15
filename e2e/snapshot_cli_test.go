//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// TestSnapshotCommandTakesASetNowWithHooks runs `snapgate snapshot` as a user
// would: the same engine and hooks as the webhook, a new set every time.
func TestSnapshotCommandTakesASetNowWithHooks(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	c.Apply(t, ns, appStatefulSet("db", 2, map[string]string{
		"snapgate.io/pre-hook":  `["sh","-c","echo quiesced > /data/quiesced.txt"]`,
		"snapgate.io/post-hook": `["sh","-c","rm /data/quiesced.txt"]`,
	}, nil))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	snapgate := func(args ...string) framework.Result {
		return c.Run(t, "", c.Bin("snapgate"), append(args, "--kubeconfig", c.Kubeconfig, "-n", ns)...)
	}

	r := snapgate("snapshot", "sts/db")
	if r.Err != nil || !strings.Contains(r.Stdout, "Took snapshot set db-") || !strings.Contains(r.Stdout, "2 snapshots ready") {
		t.Fatalf("snapgate snapshot: %v\nstdout: %s\nstderr: %s", r.Err, r.Stdout, r.Stderr)
	}
	snaps := c.Snapshots(t, ns, "db")
	if len(snaps) != 2 || snaps[0].Annotations["snapgate.io/reason"] != "manual" || snaps[0].Annotations["snapgate.io/requested-by"] != "kwok-admin" {
		t.Fatalf("snapshots = %v, reason %q, by %q", framework.SnapshotNames(snaps), snaps[0].Annotations["snapgate.io/reason"], snaps[0].Annotations["snapgate.io/requested-by"])
	}
	// The hooks ran around the cut: the snapshot holds the pre-hook's file, the pod no longer does.
	if got := restoredFilesOnNode(t, c, ns, snaps[0].Name); got != "quiesced.txt\n" {
		t.Errorf("snapshot holds %q, want the pre-hook's file", got)
	}
	if got := files(t, c, ns, "db-0"); got != "" {
		t.Errorf("db-0 holds %q after the post-hook", got)
	}

	// Another snapshot is another set, never the first one again.
	time.Sleep(1100 * time.Millisecond)
	if r := snapgate("snapshot", "sts/db", "--wait-for", "cut"); r.Err != nil {
		t.Fatalf("second snapshot: %v\n%s", r.Err, r.Stderr)
	}
	if snaps := c.Snapshots(t, ns, "db"); len(snaps) != 4 {
		t.Fatalf("after two snapshots: %v, want two sets of 2", framework.SnapshotNames(snaps))
	}
	if r := snapgate("snapshot", "sts/db", "--wait-for", "soon"); r.Err == nil || !strings.Contains(r.Stderr, `--wait-for="soon": must be ready or cut`) {
		t.Errorf("bad --wait-for: err %v, stderr %q", r.Err, r.Stderr)
	}
}
