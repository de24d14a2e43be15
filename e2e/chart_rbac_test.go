//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// TestTheChartsPermissionsAreEnoughForEverythingSnapgateDoes runs snapgate as
// the chart's ServiceAccount, with exactly the RBAC the chart grants, through
// everything it does: issue its certificate into the Secret and the
// webhooks' caBundles, guard upgrades with hooks (pods/exec, the requester's
// SubjectAccessReview, the record of post-hooks in flight), prune, tell events,
// and roll back (PVCs, PVs, the StatefulSet). release.serve fails the test on
// any RBAC refusal in snapgate's log.
func TestTheChartsPermissionsAreEnoughForEverythingSnapgateDoes(t *testing.T) {
	c := framework.Connect(t)
	rel := installRelease(t, c, 19455, "certs.mode=builtin")
	rel.serve(t, "--cert-secret", "sg-snapgate-tls", "--cert-dir", t.TempDir())
	waitFor(t, 30*time.Second, rel.trusted, "certificate issued into the Secret and its CA in all five webhooks")

	ns := c.Namespace(t)
	c.Apply(t, ns, appStatefulSet("db", 2, map[string]string{
		policy.PreHook: `["sh","-c","touch /data/quiesced"]`, policy.PostHook: `["sh","-c","rm /data/quiesced"]`, policy.Keep: "1",
		// Both replicas cut as one VolumeGroupSnapshot: its creation, the PVCs'
		// labels and the pruning of groups are the chart's rights too.
		policy.Group: string(policy.GroupStatefulSet),
	}, nil))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	for _, limit := range []string{"64Mi", "65Mi", "66Mi"} {
		r := c.Kubectl(t, "-n", ns, "set", "resources", "statefulset/db", "-c", "app", "--limits=memory="+limit)
		if r.Err != nil || !strings.Contains(r.Stderr, "snapgate: took snapshot set db-") {
			t.Fatalf("change to a %s limit: %v\n%s", limit, r.Err, r.Stderr)
		}
		c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	}
	// keep=1, and the last set is kept over and above that: the oldest goes.
	waitFor(t, 30*time.Second, func() bool { return len(c.Snapshots(t, ns, "db")) == 4 }, "the oldest set pruned")
	for _, pod := range []string{"db-0", "db-1"} {
		if got := files(t, c, ns, pod); strings.Contains(got, "quiesced") {
			t.Errorf("%s: the post-hook did not run: %s", pod, got)
		}
	}

	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", policy.RollbackTo+"=latest")
	if st := c.WaitRollback(t, ns, "db", 2*time.Minute); st.Phase != policy.PhaseSucceeded {
		t.Fatalf("rollback: %+v", st)
	}
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "db", "-o", "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}"); got != "65Mi" {
		t.Errorf("memory limit after the rollback = %s, want the template before the last change (65Mi)", got)
	}
	// One group per set kept (the two kept and the rollback's safety set):
	// the pruned set's group went with it.
	sets := map[string]bool{}
	for _, vs := range c.Snapshots(t, ns, "db") {
		sets[vs.Labels["snapgate.io/set"]] = true
	}
	groups := strings.Fields(c.MustKubectl(t, "-n", ns, "get", "volumegroupsnapshots", "-o", `jsonpath={range .items[*]}{.metadata.labels.snapgate\.io/set}{" "}{end}`))
	for _, g := range groups {
		if !sets[g] {
			t.Errorf("group snapshot of set %s, which is pruned, is left", g)
		}
	}
	if len(groups) != len(sets) || len(sets) != 3 {
		t.Errorf("%d group snapshots (%v) for %d sets; want one for each of the 3", len(groups), groups, len(sets))
	}
	if out := c.MustKubectl(t, "-n", ns, "get", "events", "--field-selector", "reason=SnapshotSetTaken", "-o", "name"); out == "" {
		t.Error("no SnapshotSetTaken event on the StatefulSet")
	}
	if out := c.MustKubectl(t, "-n", rel.namespace, "get", "leases", "-l", "snapgate.io/component=in-flight-hooks", "-o", "name"); out != "" {
		t.Errorf("records of post-hooks in flight left behind: %s", out)
	}

	// A scheduled verify: a scratch StatefulSet and PVCs created, exec'd
	// into, the snapshots marked, all of it deleted.
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", policy.VerifyCommand+`=["ls","/data"]`, policy.Verify+"=* * * * *")
	waitFor(t, 3*time.Minute, func() bool {
		for _, vs := range c.Snapshots(t, ns, "db") {
			if vs.Annotations["snapgate.io/verified"] == "passed" {
				return true
			}
		}
		return false
	}, "a set verified on schedule")
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", policy.Verify+"-")
	waitFor(t, time.Minute, func() bool {
		return strings.TrimSpace(c.MustKubectl(t, "-n", ns, "get", "statefulsets,pvc", "-l", "snapgate.io/verify-of", "-o", "name")) == ""
	}, "the verify's scratch copy deleted")
}
