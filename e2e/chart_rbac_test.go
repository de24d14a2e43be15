//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/e2e/framework"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// TestTheChartsPermissionsAreEnoughForEverythingSnapgateDoes runs the chart's
// pods, as its ServiceAccount with exactly the RBAC the chart grants, through
// everything snapgate does: issue its certificate into the Secret and the
// webhooks' caBundles, elect a leader, guard upgrades with hooks (pods/exec,
// the requester's SubjectAccessReview, the record of post-hooks in flight),
// prune, tell events, and roll back (PVCs, PVs, the StatefulSet).
// installChart fails the test on any RBAC refusal in the pods' logs.
func TestTheChartsPermissionsAreEnoughForEverythingSnapgateDoes(t *testing.T) {
	c := framework.Connect(t)
	rel := installChart(t, c, "certs.mode=builtin")
	waitFor(t, 30*time.Second, rel.trusted, "certificate issued into the Secret and its CA in all five webhooks")

	ns := c.Namespace(t)
	c.Apply(t, ns, appStatefulSet("db", 2, map[string]string{
		policy.PreHook: `["sh","-c","touch /data/quiesced"]`, policy.PostHook: `["sh","-c","rm /data/quiesced"]`, policy.Keep: "1",
		// Both replicas cut as one VolumeGroupSnapshot: its creation, the PVCs'
		// labels and the pruning of groups are the chart's rights too.
		policy.Group: string(policy.GroupStatefulSet),
		// A class named, which snapgate reads and checks against the driver.
		policy.SnapshotClass: "hostpath",
	}, nil))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	for _, limit := range []string{"64Mi", "65Mi", "66Mi"} {
		r := c.Kubectl(t, "-n", ns, "set", "resources", "statefulset/db", "-c", "app", "--limits=memory="+limit)
		if r.Err != nil || !strings.Contains(r.Stderr, "snapgate: took snapshot set db-") {
			t.Fatalf("change to a %s limit: %v\n%s", limit, r.Err, r.Stderr)
		}
		c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	}
	// keep=1: the newest set, the recorded one, is kept; the two older go.
	waitFor(t, 30*time.Second, func() bool { return len(c.Snapshots(t, ns, "db")) == 2 }, "the older sets pruned")
	for _, pod := range []string{"db-0", "db-1"} {
		if got := files(t, c, ns, pod); strings.Contains(got, "quiesced") {
			t.Errorf("%s: the post-hook did not run: %s", pod, got)
		}
	}

	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", policy.RollbackTo+"=latest")
	st := c.WaitRollback(t, ns, "db", 2*time.Minute)
	if st.Phase != policy.PhaseSucceeded {
		t.Fatalf("rollback: %+v", st)
	}
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "db", "-o", "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}"); got != "65Mi" {
		t.Errorf("memory limit after the rollback = %s, want the template before the last change (65Mi)", got)
	}
	// One group per set left (with keep 1: the recorded one the rollback
	// restored, and its safety set, which outlives the rollback): the pruned
	// sets' groups went with them.
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
	if len(groups) != len(sets) || len(sets) != 2 || !sets[st.Set] || !sets[st.SafetySet] {
		t.Errorf("%d group snapshots (%v) for sets %v; want one for each of the restored set %s and the safety set %s", len(groups), groups, sets, st.Set, st.SafetySet)
	}
	if out := c.MustKubectl(t, "-n", ns, "get", "events", "--field-selector", "reason=SnapshotSetTaken", "-o", "name"); out == "" {
		t.Error("no SnapshotSetTaken event on the StatefulSet")
	}
	if out := c.MustKubectl(t, "-n", rel.namespace, "get", "leases", "-l", "snapgate.io/component=in-flight-hooks", "-o", "name"); out != "" {
		t.Errorf("records of post-hooks in flight left behind: %s", out)
	}

	// One snapshot per PVC too, as without groups.
	c.MustKubectl(t, "-n", ns, "annotate", "--overwrite", "statefulset/db", policy.Group+"=none", policy.SnapshotClass+"-")
	if r := c.Kubectl(t, "-n", ns, "set", "resources", "statefulset/db", "-c", "app", "--limits=memory=67Mi"); r.Err != nil || !strings.Contains(r.Stderr, "snapgate: took snapshot set db-") {
		t.Fatalf("a change snapshotted per PVC: %v\n%s", r.Err, r.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")

	// A scale-down through the scale subresource, which carries no labels,
	// of a StatefulSet guarded by its namespace's label: snapgate reads the
	// StatefulSet's labels and then the namespace's, and records the set after.
	c.MustKubectl(t, "label", "namespace", ns, policy.GuardLabel+"=enabled")
	c.MustKubectl(t, "-n", ns, "label", "statefulset/db", policy.GuardLabel+"-")
	if r := c.Kubectl(t, "-n", ns, "scale", "statefulset/db", "--replicas=1"); r.Err != nil || !strings.Contains(r.Stderr, "snapgate: took snapshot set db-") {
		t.Fatalf("kubectl scale: %v\n%s", r.Err, r.Stderr)
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

	// Every right the chart grants was used by something above: none is
	// there for nothing (the API server's audit log says what snapgate did).
	for _, unused := range unusedGrants(t, c, rel) {
		t.Errorf("the chart grants %s, which snapgate never used here", unused)
	}
}

// rarelyUsed are grants that a code path needs which this test cannot reach
// on every run, each with that path. Anything else granted and not used fails.
var rarelyUsed = map[string]string{
	"create /pods/exec":                           "exec over SPDY, client-go's fallback where the WebSocket upgrade fails (WebSocket exec is a get)",
	"get snapshot.storage.k8s.io/volumesnapshots": "a retried request whose snapshot the cache does not show yet: the create finds it exists and reads it from the API server",
	"patch events.k8s.io/events":                  "client-go's event recorder, for an Event recorded again within minutes (a series)",
	"patch /events":                               "leader election's recorder, for the same Event again (a new leader soon after)",
	"patch coordination.k8s.io/leases":            "renewing the record of post-hooks in flight, while hooks outlast its renewal period",
	"update /secrets":                             "renewing the serving certificate (TestBuiltinCertificatesRotateWithoutLosingARequest)",
}

// unusedGrants are the rights of the release's ClusterRole and Role that
// its ServiceAccount never used, as "verb group/resource [names]". A list
// counts as used where a watch of the same resource was: client-go's
// informers stream their lists as watches where the API server can, and list
// where it cannot.
func unusedGrants(t *testing.T, c *framework.Cluster, rel *release) []string {
	t.Helper()
	used := c.Audited(t, "system:serviceaccount:"+rel.namespace+":sg-snapgate")
	var rules []rbacv1.PolicyRule
	var cr rbacv1.ClusterRole
	var r rbacv1.Role
	if err := c.Ctrl.Get(context.Background(), client.ObjectKey{Name: "sg-snapgate"}, &cr); err != nil {
		t.Fatal(err)
	}
	if err := c.Ctrl.Get(context.Background(), client.ObjectKey{Namespace: rel.namespace, Name: "sg-snapgate"}, &r); err != nil {
		t.Fatal(err)
	}
	rules = append(append(rules, cr.Rules...), r.Rules...)
	var unused []string
	for _, rule := range rules {
		for _, group := range rule.APIGroups {
			for _, res := range rule.Resources {
				for _, verb := range rule.Verbs {
					if _, rare := rarelyUsed[verb+" "+group+"/"+res]; rare || usedAny(used, verb, group, res, rule.ResourceNames) ||
						verb == "list" && usedAny(used, "watch", group, res, rule.ResourceNames) {
						continue
					}
					unused = append(unused, fmt.Sprintf("%s %s/%s %v", verb, group, res, rule.ResourceNames))
				}
			}
		}
	}
	return unused
}

func usedAny(used map[framework.Request]bool, verb, group, res string, names []string) bool {
	for req := range used {
		if req.Verb == verb && req.Group == group && req.Resource == res && (len(names) == 0 || slices.Contains(names, req.Name)) {
			return true
		}
	}
	return false
}
