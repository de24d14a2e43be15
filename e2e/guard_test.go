//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/snapgate/snapgate/e2e/framework"
	"github.com/snapgate/snapgate/snapshotter"
)

// newGuarded creates a guarded StatefulSet and waits until its replicas run.
func newGuarded(t *testing.T, c *framework.Cluster, ns, name string, replicas int, ann map[string]string) {
	t.Helper()
	c.Apply(t, ns, framework.StatefulSet(name, replicas, "postgres:16", ann))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/"+name, "--timeout=90s")
}

func annotation(t *testing.T, c *framework.Cluster, ns, sts, key string) string {
	t.Helper()
	var s appsv1.StatefulSet
	if err := c.Ctrl.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: sts}, &s); err != nil {
		t.Fatal(err)
	}
	return s.Annotations[key]
}

func image(t *testing.T, c *framework.Cluster, ns, sts string) string {
	t.Helper()
	return c.MustKubectl(t, "-n", ns, "get", "statefulset", sts, "-o", "jsonpath={.spec.template.spec.containers[0].image}")
}

// TestUpgradeIsAdmittedOnlyAfterEverySnapshotIsReady watches the API while a
// template change goes through: the new template must be stored only after all
// three snapshots are readyToUse. The class delays readiness so that the order
// is not an accident of timing.
func TestUpgradeIsAdmittedOnlyAfterEverySnapshotIsReady(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	class := c.SnapshotClassForTest(t, ns, "slow-ready", map[string]string{"readyDelay": "2s"})
	newGuarded(t, c, ns, "db", 3, map[string]string{"snapgate.io/snapshot-class": class})

	// The order is read from the writes themselves: on the stack's single etcd a
	// resourceVersion is etcd's revision, so every snapshot's readyToUse write
	// must come before the write of the new template. (Arrival times on two
	// watch streams would not do: the API server does not order them.)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	ready := map[string]uint64{}
	var stored uint64
	rv := func(o metav1.Object) uint64 {
		n, err := strconv.ParseUint(o.GetResourceVersion(), 10, 64)
		if err != nil {
			t.Errorf("resourceVersion %q: %v", o.GetResourceVersion(), err)
		}
		return n
	}
	snapWatch, err := c.Ctrl.Watch(ctx, &snapv1.VolumeSnapshotList{}, client.InNamespace(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer snapWatch.Stop()
	stsWatch, err := c.Client.AppsV1().StatefulSets(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer stsWatch.Stop()
	go func() {
		for ev := range snapWatch.ResultChan() {
			if vs, ok := ev.Object.(*snapv1.VolumeSnapshot); ok && vs.Status != nil && vs.Status.ReadyToUse != nil && *vs.Status.ReadyToUse {
				mu.Lock()
				if _, seen := ready[vs.Name]; !seen {
					ready[vs.Name] = rv(vs)
				}
				mu.Unlock()
			}
		}
	}()
	go func() {
		for ev := range stsWatch.ResultChan() {
			if s, ok := ev.Object.(*appsv1.StatefulSet); ok && ev.Type == watch.Modified && s.Spec.Template.Spec.Containers[0].Image == "postgres:17" {
				mu.Lock()
				if stored == 0 {
					stored = rv(s)
				}
				mu.Unlock()
			}
		}
	}()

	r := c.Run(t, framework.StatefulSet("db", 3, "postgres:17", map[string]string{"snapgate.io/snapshot-class": class}),
		c.Bin("kubectl"), "apply", "-n", ns, "-f", "-")
	if r.Err != nil {
		t.Fatalf("kubectl apply of the upgrade: %v\n%s", r.Err, r.Stderr)
	}
	set := annotation(t, c, ns, "db", "snapgate.io/last-set")
	if !strings.Contains(r.Stderr, "Warning: snapgate: took snapshot set "+set) ||
		!strings.Contains(r.Stderr, "kubectl annotate statefulset db -n "+ns+" snapgate.io/rollback-to="+set) {
		t.Errorf("kubectl printed %q; want a warning naming set %q and the rollback command", r.Stderr, set)
	}
	if got := image(t, c, ns, "db"); got != "postgres:17" {
		t.Fatalf("image = %q after the upgrade was admitted", got)
	}

	snaps := c.Snapshots(t, ns, "db")
	want := []string{"data-db-0-", "data-db-1-", "data-db-2-"}
	if len(snaps) != 3 {
		t.Fatalf("snapshots = %v, want one per replica", framework.SnapshotNames(snaps))
	}
	var record map[string]string
	if err := json.Unmarshal([]byte(annotation(t, c, ns, "db", "snapgate.io/last-snapshots")), &record); err != nil {
		t.Fatalf("snapgate.io/last-snapshots: %v", err)
	}
	for i, s := range snaps {
		if !strings.HasPrefix(s.Name, want[i]) || s.Labels["snapgate.io/set"] != set || s.Status == nil || s.Status.ReadyToUse == nil || !*s.Status.ReadyToUse {
			t.Errorf("snapshot %s: want prefix %s, set %s, readyToUse", s.Name, want[i], set)
		}
		if pvc := *s.Spec.Source.PersistentVolumeClaimName; record[pvc] != s.Name {
			t.Errorf("record maps %s to %q, want %q", pvc, record[pvc], s.Name)
		}
	}
	// The old pod template, for a rollback: on the first, tied to the others by its digest.
	if tmpl, carrier, err := snapshotter.RecordedTemplate(set, snaps); err != nil || !strings.Contains(tmpl, "postgres:16") || carrier.Name != snaps[0].Name {
		t.Errorf("the set records the pod template %q on %v (%v); want the old one on %s", tmpl, carrier, err, snaps[0].Name)
	}
	if got := annotation(t, c, ns, "db", "snapgate.io/last-reason"); got != "template" {
		t.Errorf("last-reason = %q, want template", got)
	}

	// Give the watches a moment to deliver what already happened, then compare.
	time.Sleep(500 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if stored == 0 || len(ready) != 3 {
		t.Fatalf("saw %d snapshots ready and the new template at resourceVersion %d; want 3 and a version", len(ready), stored)
	}
	for name, at := range ready {
		if at >= stored {
			t.Errorf("snapshot %s became ready at resourceVersion %d, after the new template was stored at %d", name, at, stored)
		}
	}
}

func TestScaleDownSnapshotsOnlyTheRemovedReplicas(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 3, nil)

	r := c.Kubectl(t, "-n", ns, "scale", "statefulset/db", "--replicas=1")
	if r.Err != nil {
		t.Fatalf("kubectl scale: %v\n%s", r.Err, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "snapgate: took snapshot set") {
		t.Errorf("kubectl scale printed %q, want snapgate's warning", r.Stderr)
	}
	snaps := c.Snapshots(t, ns, "db")
	if len(snaps) != 2 || !strings.HasPrefix(snaps[0].Name, "data-db-1-") || !strings.HasPrefix(snaps[1].Name, "data-db-2-") {
		t.Fatalf("snapshots = %v, want data-db-1 and data-db-2 only", framework.SnapshotNames(snaps))
	}
	// The Scale object carried no annotations: the record follows on the StatefulSet.
	c.MustKubectl(t, "-n", ns, "wait", "--for=jsonpath={.metadata.annotations.snapgate\\.io/last-reason}=scale-down", "statefulset/db", "--timeout=30s")
	if got := annotation(t, c, ns, "db", "snapgate.io/last-set"); got != snaps[0].Labels["snapgate.io/set"] {
		t.Errorf("last-set = %q, want %q", got, snaps[0].Labels["snapgate.io/set"])
	}
}

func TestDeleteKeepsItsSnapshots(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 2, nil)

	r := c.Kubectl(t, "-n", ns, "delete", "statefulset", "db", "--wait=true")
	if r.Err != nil {
		t.Fatalf("kubectl delete: %v\n%s", r.Err, r.Stderr)
	}
	snaps := c.Snapshots(t, ns, "db")
	if len(snaps) != 2 {
		t.Fatalf("after delete, snapshots = %v; want both replicas' kept", framework.SnapshotNames(snaps))
	}
	for _, s := range snaps {
		if s.Annotations["snapgate.io/reason"] != "delete" || s.DeletionTimestamp != nil {
			t.Errorf("snapshot %s: reason %q, deleting %v; want a kept delete snapshot", s.Name, s.Annotations["snapgate.io/reason"], s.DeletionTimestamp)
		}
	}
}

func TestDryRunCreatesNothing(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 2, nil)

	r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17", "--dry-run=server")
	if r.Err != nil {
		t.Fatalf("dry run: %v\n%s", r.Err, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "snapgate (dry run): a real request would take snapshot set") || !strings.Contains(r.Stderr, "data-db-0, data-db-1") {
		t.Errorf("dry run printed %q; want what a real request would snapshot", r.Stderr)
	}
	if snaps := c.Snapshots(t, ns, "db"); len(snaps) != 0 {
		t.Fatalf("a dry run created snapshots %v", framework.SnapshotNames(snaps))
	}
	if got := image(t, c, ns, "db"); got != "postgres:16" {
		t.Fatalf("a dry run changed the image to %q", got)
	}
}

func TestUnguardedStatefulSetNeverReachesSnapgate(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	c.Apply(t, ns, strings.Replace(framework.StatefulSet("plain", 1, "postgres:16", nil), "snapgate.io/guard: enabled", "app: plain", 1))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/plain", "--timeout=90s")

	before := c.GuardDecisions(t)
	c.MustKubectl(t, "-n", ns, "set", "image", "statefulset/plain", "db=postgres:17")
	if after := c.GuardDecisions(t); after != before {
		t.Fatalf("snapgate answered %d requests for an unguarded StatefulSet", after-before)
	}
	// A Scale carries no labels, so a scale does reach snapgate (to read the
	// StatefulSet's label, and deny a scale-up during a rollback), and passes.
	c.MustKubectl(t, "-n", ns, "scale", "statefulset/plain", "--replicas=2")
	// (More than once when the API server's write loses a conflict and re-runs admission.)
	if after := c.GuardDecisions(t); after == before {
		t.Fatal("a scale of an unguarded StatefulSet did not reach snapgate")
	}
	if snaps := c.Snapshots(t, ns, "plain"); len(snaps) != 0 {
		t.Fatalf("a scale-up of an unguarded StatefulSet took snapshots %v", framework.SnapshotNames(snaps))
	}
	// Guarded, a status-free label change does not reach it either (matchConditions).
	newGuarded(t, c, ns, "db", 1, nil)
	before = c.GuardDecisions(t)
	c.MustKubectl(t, "-n", ns, "label", "statefulset/db", "team=storage")
	if after := c.GuardDecisions(t); after != before {
		t.Fatalf("a label change reached snapgate %d times", after-before)
	}
	if snaps := c.Snapshots(t, ns, "plain"); len(snaps) != 0 {
		t.Fatalf("unguarded StatefulSet got snapshots %v", framework.SnapshotNames(snaps))
	}
}

func TestSlowSnapshotsAreDeniedThenAdmittedOnRetryWithTheSameSet(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	budget := c.Budget(t)
	class := c.SnapshotClassForTest(t, ns, "slower-than-budget", map[string]string{"readyDelay": (budget + 4*time.Second).String()})
	newGuarded(t, c, ns, "db", 2, map[string]string{"snapgate.io/snapshot-class": class})

	r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	if r.Err == nil {
		t.Fatalf("the upgrade was admitted before its snapshots were ready: %s", r.Stderr)
	}
	if !strings.Contains(r.Stderr, "0/2 snapshots of statefulset "+ns+"/db ready") || !strings.Contains(r.Stderr, "run the same command again") {
		t.Errorf("denial = %q; want the progress and the advice to run the command again", r.Stderr)
	}
	if got := image(t, c, ns, "db"); got != "postgres:16" {
		t.Fatalf("denied upgrade changed the image to %q", got)
	}
	first := framework.SnapshotNames(c.Snapshots(t, ns, "db"))

	// The snapshots go on without the request; the same command admits once they are ready.
	c.MustKubectl(t, "-n", ns, "wait", "--for=jsonpath={.status.readyToUse}=true", "volumesnapshot", "-l", "snapgate.io/statefulset=db", "--timeout=60s")
	r = c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	if r.Err != nil {
		t.Fatalf("retry: %v\n%s", r.Err, r.Stderr)
	}
	if got := image(t, c, ns, "db"); got != "postgres:17" {
		t.Fatalf("image = %q after the retry was admitted", got)
	}
	if again := framework.SnapshotNames(c.Snapshots(t, ns, "db")); strings.Join(again, ",") != strings.Join(first, ",") {
		t.Fatalf("the retry took new snapshots: %v, then %v", first, again)
	}
}

func TestDriverErrorDeniesWithTheDriversMessage(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	class := c.SnapshotClassForTest(t, ns, "failing", map[string]string{"failWith": "simulated quota exceeded"})
	newGuarded(t, c, ns, "db", 1, map[string]string{"snapgate.io/snapshot-class": class})

	r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	if r.Err == nil {
		t.Fatalf("upgrade admitted although its snapshot failed")
	}
	if !strings.Contains(r.Stderr, "simulated quota exceeded") || !strings.Contains(r.Stderr, "data-db-0") {
		t.Errorf("denial = %q; want the driver's message and the PVC", r.Stderr)
	}
	if got := image(t, c, ns, "db"); got != "postgres:16" {
		t.Fatalf("image = %q after a denied upgrade", got)
	}
}

// A scale-down whose removed replicas' volumes go with them (whenScaled:
// Delete) is the one change that loses data at once: when the driver cannot
// snapshot them, it is refused, and every PVC is still there.
func TestAScaleDownThatDeletesVolumesIsRefusedWhenItsSnapshotsFail(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	class := c.SnapshotClassForTest(t, ns, "failing", map[string]string{"failWith": "simulated quota exceeded"})
	c.Apply(t, ns, framework.GuardedSet{Name: "db", Replicas: 3, Annotations: map[string]string{"snapgate.io/snapshot-class": class},
		PodSpec: "      containers:\n      - name: db\n        image: postgres:16\n",
		Spec:    "  persistentVolumeClaimRetentionPolicy: {whenScaled: Delete, whenDeleted: Retain}\n"}.YAML())
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=90s")

	r := c.Kubectl(t, "-n", ns, "scale", "statefulset/db", "--replicas=1")
	if r.Err == nil {
		t.Fatal("a scale-down that deletes two volumes was admitted although their snapshots failed")
	}
	if !strings.Contains(r.Stderr, "simulated quota exceeded") || !strings.Contains(r.Stderr, "PVC data-db-1") && !strings.Contains(r.Stderr, "PVC data-db-2") {
		t.Errorf("denial = %q; want the driver's message and the PVC of a removed replica", r.Stderr)
	}
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "db", "-o", "jsonpath={.spec.replicas}"); got != "3" {
		t.Errorf("replicas = %s after a refused scale-down, want 3", got)
	}
	for i := range 3 {
		pvc := fmt.Sprintf("data-db-%d", i)
		if got := c.MustKubectl(t, "-n", ns, "get", "pvc", pvc, "-o", "jsonpath={.status.phase} {.metadata.deletionTimestamp}"); got != "Bound " {
			t.Errorf("PVC %s: %q after a refused scale-down; want Bound and not deleting", pvc, got)
		}
	}
}

func TestBadAnnotationsAreDeniedByName(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 1, nil)

	for _, tc := range []struct{ set, want string }{
		{"snapgate.io/wait-for=soon", `snapgate.io/wait-for]: Unsupported value: "soon": supported values: "ready", "cut"`},
		{"snapgate.io/claims=logs", `no volumeClaimTemplate "logs"; it has: data`},
		{"snapgate.io/snapshotclass=fast", "does not know this annotation"},
	} {
		r := c.Kubectl(t, "-n", ns, "annotate", "statefulset/db", tc.set)
		if r.Err == nil || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("annotate %s: err %v, stderr %q; want denied with %q", tc.set, r.Err, r.Stderr, tc.want)
		}
	}
	// A bad annotation in a new StatefulSet is denied as well.
	r := c.Run(t, framework.StatefulSet("other", 1, "postgres:16", map[string]string{"snapgate.io/keep": "all"}), c.Bin("kubectl"), "apply", "-n", ns, "-f", "-")
	if r.Err == nil || !strings.Contains(r.Stderr, "snapgate.io/keep") {
		t.Errorf("create with snapgate.io/keep=all: err %v, stderr %q", r.Err, r.Stderr)
	}
}

func TestSkipLetsOneChangeThroughAndIsRecorded(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 2, nil)

	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/db", "snapgate.io/skip=hotfix INC-42")
	r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	if r.Err != nil {
		t.Fatalf("skipped upgrade: %v\n%s", r.Err, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "WITHOUT snapshots") {
		t.Errorf("kubectl printed %q; want a warning that no snapshots were taken", r.Stderr)
	}
	if snaps := c.Snapshots(t, ns, "db"); len(snaps) != 0 {
		t.Fatalf("a skipped change took snapshots %v", framework.SnapshotNames(snaps))
	}
	if got := annotation(t, c, ns, "db", "snapgate.io/skip"); got != "" {
		t.Fatalf("skip annotation still there (%q): it must be one-shot", got)
	}
	events := c.MustKubectl(t, "-n", ns, "get", "events", "--field-selector", "reason=SnapshotSkipped", "-o", "jsonpath={.items[*].note}{.items[*].message}")
	if !strings.Contains(events, "hotfix INC-42") || !strings.Contains(events, "kwok-admin") {
		t.Errorf("events = %q; want who skipped and why", events)
	}
	// The next change is guarded again.
	c.MustKubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:18")
	if snaps := c.Snapshots(t, ns, "db"); len(snaps) != 2 {
		t.Fatalf("after the skip, the next change took %v; want 2 snapshots", framework.SnapshotNames(snaps))
	}
}

// Deleting a namespace removes its PVCs before its StatefulSets; a guard that
// insisted on snapshots there would hang the namespace in Terminating forever.
func TestNamespaceWithAGuardedStatefulSetCanBeDeleted(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	newGuarded(t, c, ns, "db", 2, nil)
	c.MustKubectl(t, "delete", "namespace", ns, "--wait=true", "--timeout=60s")
	if r := c.Kubectl(t, "get", "namespace", ns); r.Err == nil {
		t.Fatalf("namespace %s still exists after its deletion was waited for", ns)
	}
}

// While a set is being taken the StatefulSet controller keeps writing status;
// the API server then retries a PATCH on the new resourceVersion and calls the
// webhook again. The retry must find the set the first call started, not take a
// second one.
func TestStatusWritesDuringTheWaitDoNotTakeASecondSet(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	class := c.SnapshotClassForTest(t, ns, "slow-ready-status", map[string]string{"readyDelay": "3s"})
	newGuarded(t, c, ns, "db", 2, map[string]string{"snapgate.io/snapshot-class": class})

	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(300 * time.Millisecond):
			}
			// Any status write bumps the resourceVersion, as the controller's do.
			c.Kubectl(t, "-n", ns, "patch", "statefulset/db", "--subresource=status", "--type=merge",
				"-p", `{"status":{"collisionCount":`+strconv.Itoa(i%2)+`}}`)
		}
	}()
	r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	close(stop)
	<-done
	if r.Err != nil {
		t.Fatalf("upgrade: %v\n%s", r.Err, r.Stderr)
	}
	snaps := c.Snapshots(t, ns, "db")
	if len(snaps) != 2 {
		t.Fatalf("snapshots = %v; want one set of 2", framework.SnapshotNames(snaps))
	}
}
