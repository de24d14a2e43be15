//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/snapgate/snapgate/e2e/framework"
)

// hooked creates a guarded 3-replica StatefulSet with these annotations.
func hooked(t *testing.T, c *framework.Cluster, ns string, ann map[string]string) {
	t.Helper()
	newGuarded(t, c, ns, "db", 3, ann)
}

func files(t *testing.T, c *framework.Cluster, ns, pod string) string {
	t.Helper()
	return c.MustKubectl(t, "-n", ns, "exec", pod, "--", "ls")
}

// restoredFiles restores a snapshot into a new PVC, mounts it in a pod and
// lists what the snapshot holds.
func restoredFiles(t *testing.T, c *framework.Cluster, ns, snapshot string) string {
	t.Helper()
	c.Apply(t, ns, framework.RestoredClaim("restored", snapshot)+`---
apiVersion: v1
kind: Pod
metadata:
  name: inspect
spec:
  containers: [{name: inspect, image: busybox}]
  volumes: [{name: data, persistentVolumeClaim: {claimName: restored}}]
`)
	c.MustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/inspect", "--timeout=60s")
	return files(t, c, ns, "inspect")
}

func TestHooksQuiesceBeforeTheCutAndThawAfter(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	hooked(t, c, ns, map[string]string{
		"snapgate.io/pre-hook":  `["sh","-c","echo $POD_NAME > quiesced.txt"]`,
		"snapgate.io/post-hook": `["sh","-c","rm quiesced.txt && echo $POD_NAME > thawed.txt"]`,
	})
	c.MustKubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	// The admitted upgrade replaces the pods; exec waits until they are back.
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=90s")

	for _, pod := range []string{"db-0", "db-1", "db-2"} {
		if got := files(t, c, ns, pod); got != "thawed.txt\n" {
			t.Errorf("%s holds %q; want only the post-hook's file: every pod thawed", pod, got)
		}
	}
	snaps := c.Snapshots(t, ns, "db")
	if len(snaps) != 3 {
		t.Fatalf("snapshots = %v", framework.SnapshotNames(snaps))
	}
	// The snapshot was cut between the hooks: it holds the pre-hook's file only.
	if got := restoredFiles(t, c, ns, snaps[1].Name); got != "quiesced.txt\n" {
		t.Fatalf("snapshot %s holds %q; want the pre-hook's quiesced.txt and not the post-hook's file", snaps[1].Name, got)
	}
}

func TestAFailingPreHookDeniesAndThawsEveryPod(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	hooked(t, c, ns, map[string]string{
		"snapgate.io/pre-hook":  `["sh","-c","if [ $POD_NAME = db-1 ]; then echo 'cannot checkpoint: disk full' >&2; exit 3; fi"]`,
		"snapgate.io/post-hook": `["sh","-c","echo thawed > thawed.txt"]`,
	})
	r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	if r.Err == nil {
		t.Fatal("the upgrade was admitted although a pre-hook failed")
	}
	for _, want := range []string{"pre-hook", "pod " + ns + "/db-1", "container db", "cannot checkpoint: disk full", "every pod that was quiesced was thawed"} {
		if !strings.Contains(r.Stderr, want) {
			t.Errorf("denial %q lacks %q", r.Stderr, want)
		}
	}
	for _, pod := range []string{"db-0", "db-1", "db-2"} {
		if got := files(t, c, ns, pod); got != "thawed.txt\n" {
			t.Errorf("%s holds %q; want it thawed", pod, got)
		}
	}
	if snaps := c.Snapshots(t, ns, "db"); len(snaps) != 0 {
		t.Fatalf("snapshots were taken after a failed pre-hook: %v", framework.SnapshotNames(snaps))
	}
	if got := image(t, c, ns, "db"); got != "postgres:16" {
		t.Fatalf("image = %q after a denied upgrade", got)
	}
}

func TestAHangingPreHookTimesOutAndThaws(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	hooked(t, c, ns, map[string]string{
		"snapgate.io/pre-hook":     `["sh","-c","if [ $POD_NAME = db-2 ]; then sleep 30; fi"]`,
		"snapgate.io/post-hook":    `["sh","-c","echo thawed > thawed.txt"]`,
		"snapgate.io/hook-timeout": "2s",
	})
	r := c.Kubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	if r.Err == nil {
		t.Fatal("the upgrade was admitted although a pre-hook hung")
	}
	if !strings.Contains(r.Stderr, "db-2") || !strings.Contains(r.Stderr, "timed out after 2s") {
		t.Errorf("denial %q; want the pod and the timeout", r.Stderr)
	}
	for _, pod := range []string{"db-0", "db-1", "db-2"} {
		if got := files(t, c, ns, pod); got != "thawed.txt\n" {
			t.Errorf("%s holds %q; want it thawed", pod, got)
		}
	}
}

func TestAUserWhoMayNotExecCannotRunAnnotationHooks(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	hooked(t, c, ns, map[string]string{"snapgate.io/pre-hook": `["sh","-c","echo ran > ran.txt"]`})
	c.Apply(t, ns, `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: deployer
rules:
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, patch, update]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: deployer
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: deployer}
subjects: [{kind: User, name: deployer, apiGroup: rbac.authorization.k8s.io}]
`)
	r := c.Kubectl(t, "-n", ns, "--as=deployer", "set", "image", "statefulset/db", "db=postgres:17")
	if r.Err == nil {
		t.Fatal("a user without pods/exec got annotation hooks run for them")
	}
	if !strings.Contains(r.Stderr, "user deployer may not create pods/exec in namespace "+ns) {
		t.Errorf("denial %q; want the reason", r.Stderr)
	}
	for _, pod := range []string{"db-0", "db-1", "db-2"} {
		if got := files(t, c, ns, pod); got != "" {
			t.Errorf("%s holds %q: a hook ran", pod, got)
		}
	}
	// With the right, the same change goes through and the hook runs.
	c.MustKubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	// The admitted upgrade replaces the pods; exec waits until they are back.
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=90s")
	if got := files(t, c, ns, "db-0"); got != "ran.txt\n" {
		t.Fatalf("db-0 holds %q after an admin's upgrade; want the hook's file", got)
	}
}

func TestVeleroPodAnnotationsAreHonoured(t *testing.T) {
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	manifest := strings.Replace(framework.StatefulSet("db", 2, "postgres:16", nil),
		"      labels: {app: db}\n",
		"      labels: {app: db}\n      annotations:\n"+
			"        pre.hook.backup.velero.io/command: '[\"sh\",\"-c\",\"echo velero > velero-pre.txt\"]'\n"+
			"        post.hook.backup.velero.io/command: '[\"sh\",\"-c\",\"echo velero > velero-post.txt\"]'\n", 1)
	c.Apply(t, ns, manifest)
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=90s")
	c.MustKubectl(t, "-n", ns, "set", "image", "statefulset/db", "db=postgres:17")
	// The admitted upgrade replaces the pods; exec waits until they are back.
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=90s")
	if got := files(t, c, ns, "db-1"); got != "velero-post.txt\nvelero-pre.txt\n" {
		t.Fatalf("db-1 holds %q; want both of Velero's hooks to have run", got)
	}
	snaps := c.Snapshots(t, ns, "db")
	if got := restoredFiles(t, c, ns, snaps[0].Name); got != "velero-pre.txt\n" {
		t.Fatalf("snapshot holds %q; want the pre-hook's file only", got)
	}
}
