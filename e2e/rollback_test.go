//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/e2e/framework"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// TestRollbackRestoresPostgresDataAndTemplate is the guide's story end to end
// on real PostgreSQL containers: 10,000 rows; a template change, which takes a
// set; 5,000 more rows and a dropped table; one annotation rolls back.
// PostgreSQL then starts on the restored volumes and counts 10,000 rows with
// the table back, the old template is back, and the volume the rollback
// replaced is kept (Retain) with the 15,000-row state on it.
func TestRollbackRestoresPostgresDataAndTemplate(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	c.Apply(t, ns, postgresStatefulSet("postgres", 2, "postgres:15", map[string]string{"snapgate.io/hook-preset": "postgres"}))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres", "--timeout=120s")
	pods := []string{"postgres-0", "postgres-1"}
	for _, pod := range pods {
		waitPostgres(t, c, ns, pod)
	}
	psql(t, c, ns, "postgres-0", "CREATE TABLE orders (id int PRIMARY KEY, note text); INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(1, 10000) g")
	psql(t, c, ns, "postgres-0", "CREATE TABLE customers (id int); INSERT INTO customers VALUES (1), (2)")

	c.MustKubectl(t, "-n", ns, "set", "resources", "statefulset/postgres", "-c", "postgres", "--limits=memory=512Mi")
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres", "--timeout=120s")
	set := annotation(t, c, ns, "postgres", policy.LastSet)
	if set == "" {
		t.Fatal("the change recorded no set")
	}
	// The bad change's aftermath: more rows, and a table gone.
	waitPostgres(t, c, ns, "postgres-0")
	psql(t, c, ns, "postgres-0", "INSERT INTO orders SELECT g, 'order ' || g FROM generate_series(10001, 15000) g; DROP TABLE customers")
	old := claimVolumes(t, c, ns, "data-postgres-0", "data-postgres-1")

	r := c.Kubectl(t, "-n", ns, "annotate", "statefulset/postgres", policy.RollbackTo+"=latest")
	if r.Err != nil || !strings.Contains(r.Stderr, "rolling statefulset postgres back to latest") {
		t.Fatalf("annotate: %v\n%s", r.Err, r.Stderr)
	}
	st := c.WaitRollback(t, ns, "postgres", 3*time.Minute)
	if st.Phase != policy.PhaseSucceeded || st.Set != set || st.SafetySet == "" {
		t.Fatalf("rollback ended %+v; want Succeeded to set %s with a safety set", st, set)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/postgres", "--timeout=120s")
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "postgres", "-o", "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}"); got != "" {
		t.Errorf("memory limit after rollback = %s, want the template from before the change (none)", got)
	}
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "postgres", "-o", "jsonpath={.spec.replicas}"); got != "2" {
		t.Errorf("replicas after rollback = %s, want 2", got)
	}
	for _, pod := range pods {
		waitPostgres(t, c, ns, pod)
	}
	if got := psql(t, c, ns, "postgres-0", "SELECT count(*) FROM orders"); got != "10000" {
		t.Errorf("after rollback PostgreSQL counts %s orders, want 10000", got)
	}
	if got := psql(t, c, ns, "postgres-0", "SELECT count(*) FROM customers"); got != "2" {
		t.Errorf("after rollback the dropped table holds %s rows, want it back with 2", got)
	}

	// The safety set holds the data the rollback replaced; the replaced volumes
	// are kept, and still hold the 15,000-row state.
	var safety int
	for _, s := range c.Snapshots(t, ns, "postgres") {
		if s.Labels["snapgate.io/set"] == st.SafetySet && s.Annotations["snapgate.io/reason"] == "rollback" && s.Status != nil && *s.Status.ReadyToUse {
			safety++
		}
	}
	if safety != 2 {
		t.Errorf("safety set %s has %d ready snapshots, want 2", st.SafetySet, safety)
	}
	now := claimVolumes(t, c, ns, "data-postgres-0", "data-postgres-1")
	for i, pv := range old {
		if now[i] == pv {
			t.Errorf("PVC %d still on PV %s after rollback", i, pv)
		}
	}
	if strings.Join(st.RetainedVolumes, ",") != strings.Join(old, ",") {
		t.Errorf("status names retained volumes %v, want %v", st.RetainedVolumes, old)
	}
	// The PV controller marks the volume Released once it sees its claim gone.
	c.MustKubectl(t, "wait", "--for=jsonpath={.status.phase}=Released", "pv/"+old[0], "--timeout=30s")
	var pv corev1.PersistentVolume
	if err := c.Ctrl.Get(context.Background(), client.ObjectKey{Name: old[0]}, &pv); err != nil {
		t.Fatalf("replaced PV %s: %v", old[0], err)
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || pv.Status.Phase != corev1.VolumeReleased {
		t.Fatalf("replaced PV %s: reclaim %s, phase %s; want Retain, Released", pv.Name, pv.Spec.PersistentVolumeReclaimPolicy, pv.Status.Phase)
	}
	// An operator's way back to the old data, as the README gives it: reserve
	// the volume for a new claim, claim it, start a server on it. (Freeing it
	// with claimRef null once let a parallel test's restore bind it.)
	c.MustKubectl(t, "patch", "pv", pv.Name, "--type=merge", "-p",
		fmt.Sprintf(`{"spec":{"claimRef":{"namespace":%q,"name":"replaced","uid":null,"resourceVersion":null}}}`, ns))
	c.Apply(t, ns, fmt.Sprintf(`apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: replaced
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: %q
  volumeName: %s
  resources: {requests: {storage: 1Gi}}
---
`, pv.Spec.StorageClassName, pv.Name)+postgresPod("replaced", "replaced"))
	c.MustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/replaced", "--timeout=90s")
	waitPostgres(t, c, ns, "replaced")
	if got := psql(t, c, ns, "replaced", "SELECT count(*) FROM orders"); got != "15000" {
		t.Errorf("the replaced volume counts %s orders, want 15000", got)
	}
}

// claimVolumes are the PVs the PVCs are bound to, in order.
func claimVolumes(t *testing.T, c *framework.Cluster, ns string, pvcs ...string) []string {
	t.Helper()
	out := make([]string, len(pvcs))
	for i, name := range pvcs {
		var pvc corev1.PersistentVolumeClaim
		if err := c.Ctrl.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, &pvc); err != nil {
			t.Fatalf("PVC %s: %v", name, err)
		}
		out[i] = pvc.Spec.VolumeName
	}
	return out
}

// TestRollbackOfAScaleDownBringsBackTheRemovedReplicas scales 3 -> 1 under
// whenScaled: Delete (the PVCs of replicas 1 and 2 go with them) and rolls back:
// three replicas again, each with its own data.
func TestRollbackOfAScaleDownBringsBackTheRemovedReplicas(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	c.Apply(t, ns, strings.Replace(appStatefulSet("db", 3, nil, nil), "  podManagementPolicy: Parallel\n",
		"  podManagementPolicy: Parallel\n  persistentVolumeClaimRetentionPolicy: {whenScaled: Delete, whenDeleted: Retain}\n", 1))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	// The rollback's scale to 0 held every PVC (Retain), and put Delete back after.
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "db", "-o", "jsonpath={.spec.persistentVolumeClaimRetentionPolicy.whenScaled}"); got != "Delete" {
		t.Errorf("whenScaled after rollback = %q, want Delete as before", got)
	}
	for i := range 3 {
		c.MustKubectl(t, "-n", ns, "exec", fmt.Sprintf("db-%d", i), "--", "sh", "-c", "echo replica $HOSTNAME > /data/marker")
	}
	c.MustKubectl(t, "-n", ns, "scale", "statefulset/db", "--replicas=1")
	waitClaimsGone(t, c, ns, "data-db-1", "data-db-2")

	// The plugin's way: describe the set, then roll back and follow it.
	set := c.Snapshots(t, ns, "db")[0].Labels["snapgate.io/set"]
	snapgate := func(args ...string) framework.Result {
		return c.Run(t, "", c.Bin("snapgate"), append(args, "--kubeconfig", c.Kubeconfig, "-n", ns)...)
	}
	if r := snapgate("describe", "set", set); r.Err != nil || !strings.Contains(r.Stdout, "Replicas:      3 before the change, 1 after") ||
		!strings.Contains(r.Stdout, "data-db-2-") {
		t.Fatalf("describe set %s: %v\n%s%s", set, r.Err, r.Stdout, r.Stderr)
	}
	if r := snapgate("rollback", "sts/db", "--to", "db-nosuchset"); r.Err == nil || !strings.Contains(r.Stderr, "has no such set; it has: "+set) {
		t.Fatalf("rollback to a set that is not there: %v\n%s", r.Err, r.Stderr)
	}
	r := snapgate("rollback", "sts/db", "--wait")
	if r.Err != nil || !strings.Contains(r.Stdout, "ReplacingClaims") || !strings.Contains(r.Stdout, "Rolled back: restored 2 PVCs from set "+set) {
		t.Fatalf("snapgate rollback --wait: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	// The rollback's scale to 0 held every PVC (Retain), and put Delete back after.
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "db", "-o", "jsonpath={.spec.persistentVolumeClaimRetentionPolicy.whenScaled}"); got != "Delete" {
		t.Errorf("whenScaled after rollback = %q, want Delete as before", got)
	}
	for i := range 3 {
		pod := fmt.Sprintf("db-%d", i)
		if got := strings.TrimSpace(c.MustKubectl(t, "-n", ns, "exec", pod, "--", "cat", "/data/marker")); got != "replica "+pod {
			t.Errorf("%s holds %q, want its own data", pod, got)
		}
	}
}

func waitClaimsGone(t *testing.T, c *framework.Cluster, ns string, pvcs ...string) {
	t.Helper()
	for _, pvc := range pvcs {
		c.MustKubectl(t, "-n", ns, "wait", "--for=delete", "pvc/"+pvc, "--timeout=60s")
	}
}

// TestRollbackResumesAfterTheControllerIsKilled kills snapgate while the
// rollback takes its safety set (the class makes that slow), starts it again,
// and gets the same result: one safety set, the data and template restored.
func TestRollbackResumesAfterTheControllerIsKilled(t *testing.T) {
	c := framework.Connect(t)
	rollbackInterrupted(t, c, c.Namespace(t), func() {
		c.KillSnapgate(t)
		c.StartSnapgate(t)
	})
}

// TestTheLeaderKilledMidRollbackIsResumedByTheOtherReplica: the chart as users
// install it, two replicas with cert-manager's certificate. The replica that
// leads the controllers is SIGKILLed while a rollback takes its safety set,
// and kept down (each container the kubelet starts again is killed too, as in
// a crash loop); the other takes the Lease over once it expires and finishes
// the rollback as if it had run alone.
func TestTheLeaderKilledMidRollbackIsResumedByTheOtherReplica(t *testing.T) {
	c := framework.Connect(t)
	rel := installChartWithCertManager(t, c)
	var pod string
	rollbackInterrupted(t, c, c.Namespace(t), func() {
		killed := rel.leader(t)
		pod, _, _ = strings.Cut(killed, "_")
		if framework.KillInPod(t, pod, "snapgate") == 0 {
			t.Fatalf("no process snapgate of pod %s, the leader, on this machine", pod)
		}
		var holder string
		framework.Eventually(t, time.Minute, "the other replica leading", func() error {
			// Restarted at once, the killed container would ask for the Lease
			// too, and might be first to see it expire.
			framework.KillInPod(t, pod, "snapgate")
			if holder = rel.leader(t); strings.HasPrefix(holder, pod+"_") {
				return fmt.Errorf("the Lease is held by %q, of the killed pod", holder)
			}
			return nil
		})
		t.Logf("killed %s, leading; %s leads now", killed, holder)
	})
	restarts := c.MustKubectl(t, "-n", rel.namespace, "get", "pod", pod, "-o", "jsonpath={.status.containerStatuses[0].restartCount}")
	if restarts == "0" {
		t.Errorf("the killed pod %s was never started again", pod)
	}
}

// rollbackInterrupted rolls a 2-replica StatefulSet back to the set of its
// upgrade, with interrupt called while the rollback takes its safety set (the
// class makes that slow). Whatever interrupt does, the rollback must end as
// one that ran alone: one safety set, the data and the template of before the
// upgrade, and the user's changes refused while it runs.
func rollbackInterrupted(t *testing.T, c *framework.Cluster, ns string, interrupt func()) {
	t.Helper()
	class := c.SnapshotClassForTest(t, ns, "slow", map[string]string{"readyDelay": "4s"})
	c.Apply(t, ns, appStatefulSet("db", 2, nil, nil))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	for i := range 2 {
		c.MustKubectl(t, "-n", ns, "exec", fmt.Sprintf("db-%d", i), "--", "sh", "-c", "echo v1 > /data/marker")
	}
	c.MustKubectl(t, "-n", ns, "set", "resources", "statefulset/db", "-c", "app", "--limits=memory=64Mi")
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	for i := range 2 {
		c.MustKubectl(t, "-n", ns, "exec", fmt.Sprintf("db-%d", i), "--", "sh", "-c", "echo v2 > /data/marker")
	}
	// Only the safety set is slow: the class is named after the upgrade.
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", "snapgate.io/snapshot-class="+class)

	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", policy.RollbackTo+"=latest")
	c.WaitRollbackPhase(t, ns, "db", policy.PhaseSafetySet, time.Minute)
	// Meanwhile the user's changes are denied: a rollback would overwrite them,
	// or start pods on PVCs being replaced.
	for _, args := range [][]string{{"scale", "statefulset/db", "--replicas=3"}, {"set", "resources", "statefulset/db", "-c", "app", "--limits=memory=65Mi"}} {
		if r := c.Kubectl(t, append([]string{"-n", ns}, args...)...); r.Err == nil || !strings.Contains(r.Stderr, "is being rolled back") {
			t.Errorf("kubectl %v during a rollback: %v\n%s", args, r.Err, r.Stderr)
		}
	}
	// The interruption must come while the safety set is being taken, or
	// this test stages nothing.
	var before appsv1.StatefulSet
	if err := c.Ctrl.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "db"}, &before); err != nil {
		t.Fatal(err)
	}
	if st, _ := policy.ParseRollbackState(before.Annotations); st.Phase != policy.PhaseSafetySet {
		t.Fatalf("the rollback is at %q before the interruption, past its safety set", st.Phase)
	}
	interrupt()
	st := c.WaitRollback(t, ns, "db", 3*time.Minute)
	if st.Phase != policy.PhaseSucceeded {
		t.Fatalf("rollback ended %+v", st)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "db", "-o", "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}"); got != "" {
		t.Errorf("memory limit = %s after the rollback, want the template from before the change (none)", got)
	}
	for i := range 2 {
		if got := strings.TrimSpace(c.MustKubectl(t, "-n", ns, "exec", fmt.Sprintf("db-%d", i), "--", "cat", "/data/marker")); got != "v1" {
			t.Errorf("db-%d holds %q, want v1", i, got)
		}
	}
	sets := map[string]int{}
	for _, s := range c.Snapshots(t, ns, "db") {
		sets[s.Annotations["snapgate.io/reason"]+" "+s.Labels["snapgate.io/set"]]++
	}
	if len(sets) != 2 || sets["rollback "+st.SafetySet] != 2 {
		t.Errorf("sets after a resumed rollback: %v; want the upgrade's and one safety set %s of 2", sets, st.SafetySet)
	}
}

// TestRollbackToAForeignOrUnreadySetIsRefused: a set of another StatefulSet,
// or one whose snapshots are not ready, is refused with the reason, the trigger
// is removed, and nothing changes.
func TestRollbackToAForeignOrUnreadySetIsRefused(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	class := c.SnapshotClassForTest(t, ns, "never", map[string]string{"readyDelay": "1h"})
	newGuarded(t, c, ns, "a", 1, nil)
	newGuarded(t, c, ns, "b", 1, map[string]string{"snapgate.io/snapshot-class": class})
	snapgate := func(args ...string) string {
		r := c.Run(t, "", c.Bin("snapgate"), append(args, "--kubeconfig", c.Kubeconfig, "-n", ns)...)
		if r.Err != nil {
			t.Fatalf("snapgate %v: %v\n%s", args, r.Err, r.Stderr)
		}
		return r.Stdout
	}
	snapgate("snapshot", "sts/a")
	snapgate("snapshot", "sts/b", "--wait-for", "cut")
	setOf := func(sts string) string { return c.Snapshots(t, ns, sts)[0].Labels["snapgate.io/set"] }
	pvcUID := func(name string) string {
		return c.MustKubectl(t, "-n", ns, "get", "pvc", name, "-o", "jsonpath={.metadata.uid}")
	}

	for _, tc := range []struct{ sts, set, want string }{
		{"a", setOf("b"), "belongs to statefulset \"b\", not a"},
		{"b", setOf("b"), "not ready to use yet"},
		{"a", "a-nosuchset", "has no snapshot set \"a-nosuchset\""},
	} {
		before := pvcUID("data-" + tc.sts + "-0")
		gen := c.MustKubectl(t, "-n", ns, "get", "statefulset", tc.sts, "-o", "jsonpath={.metadata.generation}")
		c.MustKubectl(t, "-n", ns, "annotate", "statefulset/"+tc.sts, policy.RollbackTo+"="+tc.set)
		st := c.WaitRollback(t, ns, tc.sts, time.Minute)
		if st.Phase != policy.PhaseFailed || !strings.Contains(st.Message, tc.want) || !strings.Contains(st.Message, "nothing was changed") {
			t.Errorf("rollback of %s to %s: %+v; want Failed: %q", tc.sts, tc.set, st, tc.want)
		}
		if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", tc.sts, "-o", "jsonpath={.metadata.generation}"); got != gen {
			t.Errorf("%s: generation %s -> %s after a refused rollback", tc.sts, gen, got)
		}
		if got := pvcUID("data-" + tc.sts + "-0"); got != before {
			t.Errorf("%s: PVC replaced after a refused rollback", tc.sts)
		}
		var sts appsv1.StatefulSet
		if err := c.Ctrl.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: tc.sts}, &sts); err != nil {
			t.Fatal(err)
		}
		if *sts.Spec.Replicas != 1 {
			t.Errorf("%s: replicas %d after a refused rollback", tc.sts, *sts.Spec.Replicas)
		}
	}
	events := c.MustKubectl(t, "-n", ns, "get", "events", "--field-selector", "reason=RollbackRefused", "-o", "name")
	if n := len(strings.Fields(events)); n != 3 {
		t.Errorf("%d RollbackRefused events, want 3", n)
	}
}

// TestRetentionKeepsExactlyNSets takes four sets of a StatefulSet that keeps
// two: the two newest stay. Deleting the StatefulSet then takes a last set, and
// none of the three is ever pruned.
func TestRetentionKeepsExactlyNSets(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 1, map[string]string{policy.Keep: "2"})
	var taken []string
	for range 4 {
		r := c.Run(t, "", c.Bin("snapgate"), "snapshot", "sts/db", "--kubeconfig", c.Kubeconfig, "-n", ns)
		if r.Err != nil {
			t.Fatalf("snapgate snapshot: %v\n%s", r.Err, r.Stderr)
		}
		taken = append(taken, strings.TrimSuffix(strings.Fields(strings.SplitAfter(r.Stdout, "Took snapshot set ")[1])[0], ":"))
	}
	want := strings.Join(taken[2:], " ")
	if got := waitSets(t, c, ns, "db", 2); got != want {
		t.Fatalf("sets kept = %s, want the two newest: %s", got, want)
	}
	// Events are written in the background: each pruned set gets one, naming it.
	for _, set := range taken[:2] {
		waitFor(t, 10*time.Second, func() bool {
			return strings.Contains(c.MustKubectl(t, "-n", ns, "get", "events", "--field-selector", "reason=SnapshotSetPruned", "-o", "jsonpath={.items[*].message}"), set)
		}, "a SnapshotSetPruned event naming "+set)
	}

	c.MustKubectl(t, "-n", ns, "delete", "statefulset", "db", "--wait")
	// The delete's set is taken while the StatefulSet still exists, and is
	// ready only once it is gone: nothing is pruned for it.
	got := waitSets(t, c, ns, "db", 3)
	if !strings.HasPrefix(got, want+" ") {
		t.Fatalf("after the delete: sets %s; want %s and the delete's set", got, want)
	}
	// Every snapshot of what is left becomes ready (each a watch event for the
	// pruner) with the StatefulSet gone, and nothing more is deleted.
	for _, s := range strings.Fields(got) {
		c.MustKubectl(t, "-n", ns, "wait", "--for=jsonpath={.status.readyToUse}=true", "volumesnapshot", "-l", "snapgate.io/set="+s, "--timeout=60s")
	}
	time.Sleep(2 * time.Second)
	if after := setNames(t, c, ns, "db"); after != got {
		t.Fatalf("sets of the deleted StatefulSet went from %s to %s", got, after)
	}
}

// setNames are the sets of a StatefulSet's snapshots, oldest first.
func setNames(t *testing.T, c *framework.Cluster, ns, sts string) string {
	t.Helper()
	var names []string
	seen := map[string]bool{}
	snaps := c.Snapshots(t, ns, sts)
	at := func(i int) time.Time {
		t, _ := time.Parse(time.RFC3339Nano, snaps[i].Annotations["snapgate.io/taken-at"])
		return t
	}
	sort.Slice(snaps, func(i, j int) bool { return at(i).Before(at(j)) })
	for _, s := range snaps {
		if set := s.Labels["snapgate.io/set"]; !seen[set] {
			seen[set] = true
			names = append(names, set)
		}
	}
	return strings.Join(names, " ")
}

// waitFor polls cond until it holds, or fails the test after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	framework.Eventually(t, timeout, what, func() error {
		if !cond() {
			return errors.New("not yet")
		}
		return nil
	})
}

// waitSets waits until the StatefulSet has n sets and returns them.
func waitSets(t *testing.T, c *framework.Cluster, ns, sts string, n int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := setNames(t, c, ns, sts)
		if len(strings.Fields(got)) == n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("statefulset %s has sets %s, want %d", sts, got, n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestARollbackIsRefusedWhileAnAvailablePVWouldTakeItsPVCs: an Available PV
// of the StatefulSet's storage class (one made by hand, or a retained one
// freed for reuse) is what Kubernetes binds a new PVC to before it provisions
// one, dataSource or not: shown first on this stack's PV controller with a PVC
// restored from the set by hand. A rollback is then refused while such a PV is
// there, naming it, with nothing changed; once it is gone the same rollback
// brings the set's data back.
func TestARollbackIsRefusedWhileAnAvailablePVWouldTakeItsPVCs(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	// A class of this test's own: a stray PV of a shared class would take
	// other tests' PVCs.
	class := ns + "-capture"
	c.Apply(t, "", "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: "+class+
		"\nprovisioner: hostpath.csi.snapgate.io\nvolumeBindingMode: Immediate\nreclaimPolicy: Delete\n")
	stray := func(name string) string {
		pv := ns + "-" + name
		c.Apply(t, "", "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: "+pv+"\nspec:\n  storageClassName: "+class+
			"\n  capacity: {storage: 5Gi}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n"+
			"  csi: {driver: hostpath.csi.snapgate.io, volumeHandle: "+pv+"}\n")
		c.MustKubectl(t, "wait", "--for=jsonpath={.status.phase}=Available", "pv/"+pv, "--timeout=30s")
		return pv
	}
	t.Cleanup(func() {
		c.Kubectl(t, "-n", ns, "delete", "statefulset,pvc", "--all", "--wait", "--timeout=60s")
		c.Kubectl(t, "delete", "pv", ns+"-stray-1", ns+"-stray-2", "--ignore-not-found")
		c.Kubectl(t, "delete", "storageclass", class)
	})
	c.Apply(t, ns, framework.GuardedSet{Name: "db", Replicas: 1, StorageClass: class, PodSpec: `      containers:
      - name: app
        image: busybox:1.36
        command: ` + framework.SleepingApp + `
        volumeMounts: [{name: data, mountPath: /data}]
`}.YAML())
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	marker := func() string {
		return strings.TrimSpace(c.MustKubectl(t, "-n", ns, "exec", "db-0", "--", "cat", "/data/marker"))
	}
	c.MustKubectl(t, "-n", ns, "exec", "db-0", "--", "sh", "-c", "echo before > /data/marker")
	if r := change(t, c, ns); r.Err != nil {
		t.Fatalf("template change: %v\n%s", r.Err, r.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	c.MustKubectl(t, "-n", ns, "exec", "db-0", "--", "sh", "-c", "echo after > /data/marker")
	snap := c.Snapshots(t, ns, "db")[0].Name

	// The premise: a PVC from the snapshot is bound to the stray PV.
	first := stray("stray-1")
	c.Apply(t, ns, "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: by-hand\nspec:\n  storageClassName: "+class+
		"\n  accessModes: [ReadWriteOnce]\n  resources: {requests: {storage: 1Gi}}\n"+
		"  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: "+snap+"}\n")
	c.MustKubectl(t, "-n", ns, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/by-hand", "--timeout=60s")
	if got := c.MustKubectl(t, "-n", ns, "get", "pvc", "by-hand", "-o", "jsonpath={.spec.volumeName}"); got != first {
		t.Fatalf("a PVC restored from %s by hand was bound to %q; this test's premise is that Kubernetes binds it to the Available PV %s", snap, got, first)
	}
	c.MustKubectl(t, "-n", ns, "delete", "pvc", "by-hand", "--wait", "--timeout=60s")

	second := stray("stray-2")
	uid := c.MustKubectl(t, "-n", ns, "get", "pvc", "data-db-0", "-o", "jsonpath={.metadata.uid}")
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", policy.RollbackTo+"=latest")
	st := c.WaitRollback(t, ns, "db", 2*time.Minute)
	if st.Phase != policy.PhaseFailed || !strings.Contains(st.Message, "PV "+second) || !strings.Contains(st.Message, "nothing was changed") {
		t.Fatalf("rollback with %s Available: %+v; want Failed, naming the PV", second, st)
	}
	t.Logf("refused: %s", st.Message)
	if got := c.MustKubectl(t, "-n", ns, "get", "pvc", "data-db-0", "-o", "jsonpath={.metadata.uid}"); got != uid || marker() != "after" {
		t.Fatalf("after the refusal: PVC uid %s (was %s), marker %q; want both as they were", got, uid, marker())
	}

	c.MustKubectl(t, "delete", "pv", second, "--wait", "--timeout=60s")
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", policy.RollbackTo+"=latest")
	if st := c.WaitRollback(t, ns, "db", 3*time.Minute); st.Phase != policy.PhaseSucceeded {
		t.Fatalf("rollback once %s is gone: %+v; want Succeeded", second, st)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	if got := marker(); got != "before" {
		t.Errorf("after the rollback /data/marker holds %q, want the set's %q", got, "before")
	}
}
