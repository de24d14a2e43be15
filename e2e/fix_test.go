//go:build e2e

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
)

// brokenPostgres is the postgres:15 StatefulSet of postgresStatefulSet with the
// postgres preset, plus a mistake a user pushes: container args, or a pod spec
// line (a nodeSelector).
func brokenPostgres(name, containerExtra, podExtra string) string {
	return postgresManifest(name, 1, "postgres:15", map[string]string{"snapgate.io/hook-preset": "postgres"}, containerExtra, podExtra)
}

// applyFix applies a manifest as a user pushes a fix, and fails the test if
// snapgate denies it.
func applyFix(t *testing.T, c *framework.Cluster, ns, manifest string) string {
	t.Helper()
	r := c.Run(t, manifest, c.Bin("kubectl"), "apply", "-n", ns, "-f", "-")
	if r.Err != nil {
		t.Fatalf("the fix was denied: %v\n%s", r.Err, r.Stderr)
	}
	return r.Stderr
}

// events are the StatefulSet's Events, as kubectl describe would show them.
func events(t *testing.T, c *framework.Cluster, ns, sts string) string {
	t.Helper()
	return c.MustKubectl(t, "-n", ns, "get", "events", "--field-selector", "involvedObject.kind=StatefulSet,involvedObject.name="+sts,
		"-o", "jsonpath={range .items[*]}{.reason}: {.note}{.message}{\"\\n\"}{end}")
}

// A StatefulSet whose pod never schedules (a nodeSelector no node has): the
// apply that removes the nodeSelector is admitted, its volume (bound, empty) is
// snapshotted as it is, and the warning and Event say the pod got no hooks.
func TestAFixForAPendingPodIsAdmitted(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	c.Apply(t, ns, brokenPostgres("web", "", "      nodeSelector: {disktype: ssd}\n"))
	framework.Eventually(t, time.Minute, "web-0 Pending as Unschedulable, its PVC bound", func() error {
		reason := c.Kubectl(t, "-n", ns, "get", "pod", "web-0", "-o", `jsonpath={.status.conditions[?(@.type=="PodScheduled")].reason}`).Stdout
		phase := c.Kubectl(t, "-n", ns, "get", "pvc", "data-web-0", "-o", "jsonpath={.status.phase}").Stdout
		if reason != "Unschedulable" || phase != "Bound" {
			return fmt.Errorf("pod scheduled reason %q, PVC %q", reason, phase)
		}
		return nil
	})

	warning := applyFix(t, c, ns, brokenPostgres("web", "", ""))
	if !strings.Contains(warning, "snapgate: took snapshot set web-") ||
		!strings.Contains(warning, "got no hooks; their volumes were snapshotted as they are (crash-consistent): pod web-0 (it is Pending: Unschedulable)") {
		t.Fatalf("the fix's warnings do not say the set was taken without hooks in web-0: %q", warning)
	}
	if ev := events(t, c, ns, "web"); !strings.Contains(ev, "no hooks in pod web-0 (it is Pending: Unschedulable), snapshotted as it is") {
		t.Fatalf("the StatefulSet's Events do not name the pod that got no hooks:\n%s", ev)
	}
	snaps := c.Snapshots(t, ns, "web")
	if len(snaps) != 1 || snaps[0].Status == nil || snaps[0].Status.ReadyToUse == nil || !*snaps[0].Status.ReadyToUse {
		t.Fatalf("want one ready snapshot of data-web-0, got %v", framework.SnapshotNames(snaps))
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/web", "--timeout=120s")
	waitPostgres(t, c, ns, "web-0")
}

// A PostgreSQL that a bad setting sends into a crash loop: the push that
// removes the setting is admitted (no CHECKPOINT into a server that is not
// there), with a crash-consistent snapshot, and once Kubernetes's own step for
// a StatefulSet stuck on a broken pod is taken (delete the pod), the server is
// back with its data.
func TestAFixForACrashLoopingPostgresIsAdmitted(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	c.Apply(t, ns, brokenPostgres("db", "", ""))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	waitPostgres(t, c, ns, "db-0")
	psql(t, c, ns, "db-0", "CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 1000) g")

	// The mistake: a setting the server refuses. It is guarded like any upgrade.
	bad := c.Run(t, brokenPostgres("db", "        args: [\"-c\", \"shared_buffers=lots\"]\n", ""), c.Bin("kubectl"), "apply", "-n", ns, "-f", "-")
	if bad.Err != nil || !strings.Contains(bad.Stderr, "took snapshot set db-") {
		t.Fatalf("the bad change: %v\n%s", bad.Err, bad.Stderr)
	}
	// Crash-looping as `kubectl get pod` shows it: restarted again and again,
	// each time after a failure.
	framework.Eventually(t, 2*time.Minute, "db-0 crash-looping on the bad setting", func() error {
		r := c.Kubectl(t, "-n", ns, "get", "pod", "db-0", "-o", `jsonpath={.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].lastState.terminated.exitCode}`)
		if r.Err != nil {
			return fmt.Errorf("%v: %s", r.Err, r.Stderr) // between the old pod and its replacement
		}
		f := strings.Fields(r.Stdout)
		if len(f) != 2 || f[0] == "0" || f[0] == "1" || f[1] == "0" {
			return fmt.Errorf("restarts and last exit code: %q", r.Stdout)
		}
		return nil
	})
	// The previous container's log, as `kubectl logs --previous` shows it. It
	// is read again if the container it names was replaced (and its log
	// removed) between the status and the read: any crash's log says why.
	framework.Eventually(t, 30*time.Second, "db-0's last log showing the server refusing the setting", func() error {
		r := c.Kubectl(t, "-n", ns, "logs", "db-0", "-c", "postgres", "--previous")
		if !strings.Contains(r.Stdout, `invalid value for parameter "shared_buffers": "lots"`) {
			return fmt.Errorf("%s%s", r.Stdout, r.Stderr)
		}
		return nil
	})

	// Between two crashes the container is waiting (CrashLoopBackOff), or it is
	// starting again and stops while the CHECKPOINT tries to connect: either
	// way it gets no hooks.
	warning := applyFix(t, c, ns, brokenPostgres("db", "", ""))
	if !strings.Contains(warning, "snapgate: took snapshot set db-") ||
		!strings.Contains(warning, "got no hooks; their volumes were snapshotted as they are (crash-consistent): pod db-0 (") {
		t.Fatalf("the fix's warnings do not say db-0 got no hooks: %q", warning)
	}
	if n := len(c.Snapshots(t, ns, "db")); n != 2 {
		t.Fatalf("want two sets of one snapshot each (the bad change's and the fix's), got %d snapshots", n)
	}
	// https://kubernetes.io/docs/concepts/workloads/controllers/statefulset/#forced-rollback:
	// with OrderedReady, the controller waits for the broken pod; the user deletes it.
	c.MustKubectl(t, "-n", ns, "delete", "pod", "db-0", "--wait=false")
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	waitPostgres(t, c, ns, "db-0")
	if n, _ := strconv.Atoi(psql(t, c, ns, "db-0", "SELECT count(*) FROM orders")); n != 1000 {
		t.Fatalf("after the fix orders has %d rows, want 1000", n)
	}
}
