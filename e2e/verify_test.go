//go:build e2e

package e2e

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// `snapgate verify` restores a set as a scratch StatefulSet beside the live
// one, runs the check (the preset's, then the user's own), records the
// outcome on the set's snapshots, tells it, and leaves nothing behind; a
// check that fails is a failed verify, recorded and shown as such; and
// snapgate.io/verify makes the same verify on a schedule.
func TestAVerifyRestoresChecksRecordsAndCleansUp(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	applyGuide(t, c, ns)
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/postgres", "snapgate.io/hook-preset=postgres")
	psql(t, c, ns, "postgres-0", "CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 1000) g")
	snapgate := func(args ...string) framework.Result {
		return c.Run(t, "", c.Bin("snapgate"), append(args, "--kubeconfig", c.Kubeconfig, "-n", ns)...)
	}
	if r := snapgate("snapshot", "sts/postgres"); r.Err != nil {
		t.Fatalf("snapgate snapshot: %v\n%s", r.Err, r.Stderr)
	}
	set := c.Snapshots(t, ns, "postgres")[0].Labels["snapgate.io/set"]
	verified := func() (string, string) {
		vs := c.Snapshots(t, ns, "postgres")[0]
		return vs.Annotations["snapgate.io/verified"], vs.Annotations["snapgate.io/verified-at"]
	}

	r := snapgate("verify", "set", set, "--timeout", "3m")
	if r.Err != nil || r.Stderr != "" || !strings.Contains(r.Stdout, "Set "+set+" verified: preset postgres: every database accepts a connection and reads its catalog.") {
		t.Fatalf("snapgate verify: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	if outcome, _ := verified(); outcome != "passed" {
		t.Errorf("snapgate.io/verified = %q after a verify that passed", outcome)
	}
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulsets,pvc", "-l", "snapgate.io/verify-of="+set, "-o", "name"); strings.TrimSpace(got) != "" {
		framework.Eventually(t, time.Minute, "the scratch copy is gone", func() error {
			if got := c.MustKubectl(t, "-n", ns, "get", "statefulsets,pvc", "-l", "snapgate.io/verify-of="+set, "-o", "name"); strings.TrimSpace(got) != "" {
				return errors.New(got)
			}
			return nil
		})
	}
	if ev := events(t, c, ns, "postgres"); !strings.Contains(ev, "SetVerified: Set "+set+" restores") {
		t.Errorf("no SetVerified Event; events:\n%s", ev)
	}
	if out := snapgate("list", "sts/postgres"); !strings.Contains(out.Stdout, "VERIFIED") || !strings.Contains(out.Stdout, "passed ") {
		t.Errorf("snapgate list after a verify:\n%s", out.Stdout)
	}

	// The user's own check: one that finds the data passes, one that does not fails.
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/postgres", `snapgate.io/verify-command=["psql","-U","postgres","-XAtc","SELECT count(*) FROM orders"]`)
	if r := snapgate("verify", "set", set, "--timeout", "3m"); r.Err != nil || !strings.Contains(r.Stdout, "verified: snapgate.io/verify-command") {
		t.Fatalf("a verify-command that finds the orders: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "annotate", "--overwrite", "statefulset/postgres", `snapgate.io/verify-command=["psql","-U","postgres","-XAtc","SELECT count(*) FROM invoices"]`)
	// A failing check is retried until the timeout (a restored server may
	// still be starting); the timeout leaves room for a loaded machine to get
	// the pod Ready and one run finished, or the failure told is the deadline.
	r = snapgate("verify", "set", set, "--timeout", "40s")
	if r.Err == nil || !strings.Contains(r.Stdout, "did not verify") || !strings.Contains(r.Stdout, `relation "invoices" does not exist`) {
		t.Fatalf("a verify-command that fails: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	outcome, lastAt := verified()
	if outcome != "failed" {
		t.Errorf("snapgate.io/verified = %q after a verify that failed", outcome)
	}
	if ev := events(t, c, ns, "postgres"); !strings.Contains(ev, "SetVerifyFailed: Set "+set+" did not verify") {
		t.Errorf("no SetVerifyFailed Event; events:\n%s", ev)
	}

	// On a schedule, by snapgate itself, with the check fixed.
	before := c.Metric(t, "snapgate_verifications_total", `outcome="passed"`)
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/postgres", "snapgate.io/verify-command-", "snapgate.io/verify=* * * * *")
	framework.Eventually(t, 3*time.Minute, "snapgate verifies the set on its schedule", func() error {
		if outcome, at := verified(); outcome != "passed" || at == lastAt {
			return errors.New("verified " + outcome + " at " + at)
		}
		return nil
	})
	if after := c.Metric(t, "snapgate_verifications_total", `outcome="passed"`); after <= before {
		t.Errorf("snapgate_verifications_total{outcome=passed} %d -> %d", before, after)
	}
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/postgres", "snapgate.io/verify-")
}
