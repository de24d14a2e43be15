//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
	"github.com/snapgate/snapgate/snapshotter/presets"
)

// freezable renders a guarded StatefulSet as the fsfreeze preset's docs have
// one: the application's container, and a privileged sidecar that mounts the
// same volume (CAP_SYS_ADMIN is what freezing needs), named as the hook
// container; each volume a real ext4 filesystem (class hostpath-ext4).
func freezable(name string, replicas int, ann map[string]string) string {
	ann["snapgate.io/hook-container"] = "freezer"
	return framework.GuardedSet{Name: name, Replicas: replicas, Annotations: ann, StorageClass: "hostpath-ext4", Storage: "256Mi",
		PodSpec: `      containers:
      - name: app
        image: busybox:1.36
        command: ` + framework.SleepingApp + `
        volumeMounts: [{name: data, mountPath: /data}]
      - name: freezer
        image: busybox:1.36
        command: ` + framework.SleepingApp + `
        securityContext: {privileged: true}
        volumeMounts: [{name: data, mountPath: /data}]
`}.YAML()
}

var freezablePods = []string{"fz-0", "fz-1"}

// freezableSet creates a 2-replica freezable StatefulSet with the fsfreeze
// preset and a class that takes cutDelay to cut, and writes a file "before" on
// each volume. Whatever a failing test leaves frozen is thawed when it ends.
func freezableSet(t *testing.T, c *framework.Cluster, ns, cutDelay string) {
	t.Helper()
	class := c.SnapshotClassForTest(t, ns, "slowcut", map[string]string{"cutDelay": cutDelay})
	c.Apply(t, ns, freezable("fz", 2, map[string]string{"snapgate.io/hook-preset": "fsfreeze", "snapgate.io/snapshot-class": class}))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/fz", "--timeout=120s")
	for _, pod := range freezablePods {
		if fs := c.MustKubectl(t, "-n", ns, "exec", pod, "-c", "app", "--", "sh", "-c", "awk '$2 == \"/data\" {print $3}' /proc/mounts"); strings.TrimSpace(fs) != "ext4" {
			t.Fatalf("%s mounts /data as %q, want its own ext4 filesystem", pod, fs)
		}
		c.MustKubectl(t, "-n", ns, "exec", pod, "-c", "app", "--", "sh", "-c", "echo before >/data/before")
	}
	t.Cleanup(func() {
		for _, pod := range freezablePods {
			c.Kubectl(t, "-n", ns, "exec", pod, "-c", "freezer", "--", "fsfreeze", "--unfreeze", "/data")
		}
	})
}

// frozen reports whether the pod's volume is frozen, as the kernel says: a
// second freeze of a frozen filesystem fails with EBUSY. One that was not frozen
// is thawed again at once; call it only when no one else may be freezing it.
func frozen(t *testing.T, c *framework.Cluster, ns, pod string) bool {
	t.Helper()
	r := c.Kubectl(t, "-n", ns, "exec", pod, "-c", "freezer", "--", "fsfreeze", "--freeze", "/data")
	if r.Err == nil {
		c.MustKubectl(t, "-n", ns, "exec", pod, "-c", "freezer", "--", "fsfreeze", "--unfreeze", "/data")
		return false
	}
	if strings.Contains(r.Stderr, "Device or resource busy") {
		return true
	}
	t.Fatalf("fsfreeze --freeze /data in %s: %v: %s", pod, r.Err, r.Stderr)
	return false
}

// writeFile writes a file in the pod's volume from the application's container
// in the background; the channel says when it returned.
func writeFile(t *testing.T, c *framework.Cluster, ns, pod, name string) <-chan error {
	wrote := make(chan error, 1)
	go func() {
		r := c.Kubectl(t, "-n", ns, "exec", pod, "-c", "app", "--", "sh", "-c", "echo during >/data/"+name)
		if r.Err != nil {
			r.Err = fmt.Errorf("%v: %s", r.Err, r.Stderr)
		}
		wrote <- r.Err
	}()
	return wrote
}

// restoredFilesOnNode restores a snapshot into a new PVC, mounts it in a pod
// and lists what the snapshot holds.
func restoredFilesOnNode(t *testing.T, c *framework.Cluster, ns, snapshot string) string {
	t.Helper()
	c.Apply(t, ns, framework.RestoredClaim("restored", snapshot)+`---
apiVersion: v1
kind: Pod
metadata:
  name: inspect
spec:
  containers:
  - name: inspect
    image: busybox:1.36
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: restored}}]
`)
	c.MustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/inspect", "--timeout=90s")
	return c.MustKubectl(t, "-n", ns, "exec", "inspect", "--", "ls", "/data")
}

// TestFSFreezePresetFreezesTheVolumesUntilTheCut runs the fsfreeze preset on
// real ext4 filesystems: while the snapshots are cut (the class makes that take
// 5 s) the kernel reports every replica's filesystem frozen and a write waits;
// the snapshot holds what was written before and not the waiting write, and
// once the change is admitted the write has landed and nothing is frozen.
func TestFSFreezePresetFreezesTheVolumesUntilTheCut(t *testing.T) {
	// Serial: its class takes 5s of the e2e budget to cut, and the copy of
	// two ext4 volumes on a loaded machine may take the rest.
	c := framework.Connect(t)
	ns := c.Namespace(t)
	freezableSet(t, c, ns, "5s")

	done := make(chan framework.Result, 1)
	go func() {
		done <- c.Kubectl(t, "-n", ns, "set", "resources", "statefulset/fz", "-c", "app", "--limits=memory=64Mi")
	}()
	// The snapshots are created only once every pre-hook has returned.
	waitFor(t, 20*time.Second, func() bool { return len(c.Snapshots(t, ns, "fz")) == 2 }, "two snapshots")
	for _, pod := range freezablePods {
		if !frozen(t, c, ns, pod) {
			t.Errorf("%s: the filesystem of its volume is not frozen while the snapshots are cut", pod)
		}
	}
	wrote := writeFile(t, c, ns, "fz-0", "during")
	select {
	case err := <-wrote:
		t.Fatalf("a write while the snapshots are cut returned at once (%v); want it to wait for the thaw", err)
	case <-time.After(time.Second):
	}

	r := <-done
	if r.Err != nil || !strings.Contains(r.Stderr, "snapgate: took snapshot set fz-") {
		t.Fatalf("the change: %v\n%s", r.Err, r.Stderr)
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatalf("the write that waited: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write still waits 10 s after the change was admitted")
	}
	var snap0 string
	for _, s := range c.Snapshots(t, ns, "fz") {
		if s.Labels["snapgate.io/ordinal"] == "0" {
			snap0 = s.Name
		}
	}
	got := restoredFilesOnNode(t, c, ns, snap0)
	if !strings.Contains(got, "before") || strings.Contains(got, "during") {
		t.Errorf("snapshot %s holds %q; want the file written before the freeze and not the one that waited", snap0, got)
	}
}

// inFlightRecords counts snapgate's records of post-hooks in flight.
func inFlightRecords(t *testing.T, c *framework.Cluster) int {
	out := c.MustKubectl(t, "-n", "snapgate-system", "get", "leases", "-l", "snapgate.io/component=in-flight-hooks", "-o", "name")
	return len(strings.Fields(out))
}

// killWhileFrozen starts an upgrade of fz, SIGKILLs snapgate once the volumes
// are frozen (the snapshots exist, their cut is delayed), and returns when,
// and the upgrade's kubectl, which ends when the API server has its answer.
// snapgate is started again when the test ends.
func killWhileFrozen(t *testing.T, c *framework.Cluster, ns string) (time.Time, <-chan framework.Result) {
	t.Helper()
	t.Cleanup(func() { c.StartSnapgate(t) })
	upgrade := make(chan framework.Result, 1)
	go func() {
		upgrade <- c.Kubectl(t, "-n", ns, "set", "resources", "statefulset/fz", "-c", "app", "--limits=memory=64Mi")
	}()
	waitFor(t, 20*time.Second, func() bool { return len(c.Snapshots(t, ns, "fz")) == 2 }, "two snapshots")
	if n := inFlightRecords(t, c); n != 1 {
		t.Fatalf("%d records of post-hooks in flight while the volumes are frozen; want 1", n)
	}
	frozenAt := time.Now()
	c.KillSnapgate(t)
	return frozenAt, upgrade
}

// awaitThaw writes to every volume and returns how long after frozenAt the
// last write went through, failing past the watchdogs' bound.
func awaitThaw(t *testing.T, c *framework.Cluster, ns string, frozenAt time.Time) time.Duration {
	t.Helper()
	waits := map[string]<-chan error{}
	for _, pod := range freezablePods {
		waits[pod] = writeFile(t, c, ns, pod, "during")
	}
	for pod, wrote := range waits {
		select {
		case err := <-wrote:
			if err != nil {
				t.Fatalf("%s: %v", pod, err)
			}
		case <-time.After(presets.FreezeBound + 20*time.Second - time.Since(frozenAt)):
			t.Fatalf("%s: still frozen %s after snapgate was killed; the watchdog's bound is %s", pod, time.Since(frozenAt), presets.FreezeBound)
		}
	}
	return time.Since(frozenAt)
}

// TestARestartedSnapgateThawsWhatADeadOneFroze kills snapgate while the
// volumes are frozen and starts it again at once: the record of the post-hooks
// the dead process owed outlives it, and the new process runs them as soon as
// the record expires, long before the watchdogs' bound.
func TestARestartedSnapgateThawsWhatADeadOneFroze(t *testing.T) {
	c := framework.Connect(t)
	ns := c.Namespace(t)
	freezableSet(t, c, ns, "30s")
	// (The upgrade may be refused, or admitted with a set the restarted
	// snapgate takes when the API server calls again; either loses nothing.)
	frozenAt, _ := killWhileFrozen(t, c, ns)
	c.StartSnapgate(t)
	since := awaitThaw(t, c, ns, frozenAt)
	t.Logf("thawed %s after the freeze", since.Round(time.Second))
	if since > presets.FreezeBound-15*time.Second {
		t.Errorf("thawed %s after the freeze: that is the watchdog's bound (%s), not the restarted snapgate running the owed post-hooks", since, presets.FreezeBound)
	}
	waitFor(t, 10*time.Second, func() bool { return inFlightRecords(t, c) == 0 }, "record removed once its post-hooks ran")
	// What happened is told on the StatefulSet, once per pod.
	waitFor(t, 10*time.Second, func() bool {
		out := c.MustKubectl(t, "-n", ns, "get", "events", "--field-selector", "reason=OwedPostHookRan,involvedObject.name=fz", "-o", "name")
		return len(strings.Fields(out)) == 2
	}, "an OwedPostHookRan event for each pod")
}

// TestFSFreezeWithNothingToFreezeIsRefusedAtApply: a StatefulSet whose hook
// container mounts none of its volumes is refused when it is applied, with
// the fix, not when its first upgrade would need the freeze.
func TestFSFreezeWithNothingToFreezeIsRefusedAtApply(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	r := c.Run(t, framework.StatefulSet("nomount", 1, "busybox", map[string]string{"snapgate.io/hook-preset": "fsfreeze"}),
		c.Bin("kubectl"), "apply", "-n", ns, "-f", "-")
	if r.Err == nil || !strings.Contains(r.Stderr, `container "db" mounts none of its volumeClaimTemplates (data): set snapgate.io/hook-container`) {
		t.Fatalf("apply: %v\n%s\nwant it refused, naming the container and the fix", r.Err, r.Stderr)
	}
	if out := c.Kubectl(t, "-n", ns, "get", "statefulset", "nomount"); out.Err == nil {
		t.Fatalf("the refused StatefulSet exists:\n%s", out.Stdout)
	}
}
