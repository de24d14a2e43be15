//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/snapgate/snapgate/e2e/framework"
)

// appStatefulSet renders a guarded StatefulSet of an application in busybox
// with its volume at /data.
func appStatefulSet(name string, replicas int, ann, podAnn map[string]string) string {
	return framework.GuardedSet{Name: name, Replicas: replicas, Annotations: ann, PodAnnotations: podAnn, PodSpec: `      containers:
      - name: app
        image: busybox:1.36
        command: ` + framework.SleepingApp + `
        volumeMounts: [{name: data, mountPath: /data}]
`}.YAML()
}

// hooked creates a guarded 3-replica StatefulSet "db" with these annotations on
// the real node and waits until its replicas run.
func hooked(t *testing.T, c *framework.Cluster, ns string, ann map[string]string) {
	t.Helper()
	c.Apply(t, ns, appStatefulSet("db", 3, ann, nil))
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
}

// change makes a template change of db (a new memory limit), as kubectl set does.
func change(t *testing.T, c *framework.Cluster, ns string, as ...string) framework.Result {
	t.Helper()
	return c.Kubectl(t, append(append([]string{"-n", ns}, as...), "set", "resources", "statefulset/db", "-c", "app", "--limits=memory=64Mi")...)
}

// files lists what the pod's volume holds.
func files(t *testing.T, c *framework.Cluster, ns, pod string) string {
	t.Helper()
	return c.MustKubectl(t, "-n", ns, "exec", pod, "--", "ls", "/data")
}

func TestHooksQuiesceBeforeTheCutAndThawAfter(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	hooked(t, c, ns, map[string]string{
		"snapgate.io/pre-hook":  `["sh","-c","echo $HOSTNAME > /data/quiesced.txt"]`,
		"snapgate.io/post-hook": `["sh","-c","rm /data/quiesced.txt && echo $HOSTNAME > /data/thawed.txt"]`,
	})
	if r := change(t, c, ns); r.Err != nil {
		t.Fatalf("the change: %v\n%s", r.Err, r.Stderr)
	}
	// The admitted change replaces the pods; exec waits until they are back.
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")

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
	if got := restoredFilesOnNode(t, c, ns, snaps[1].Name); got != "quiesced.txt\n" {
		t.Fatalf("snapshot %s holds %q; want the pre-hook's quiesced.txt and not the post-hook's file", snaps[1].Name, got)
	}
}

func TestAFailingPreHookDeniesAndThawsEveryPod(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	hooked(t, c, ns, map[string]string{
		"snapgate.io/pre-hook":  `["sh","-c","if [ $HOSTNAME = db-1 ]; then echo 'cannot checkpoint: disk full' >&2; exit 3; fi"]`,
		"snapgate.io/post-hook": `["sh","-c","echo thawed > /data/thawed.txt"]`,
	})
	r := change(t, c, ns)
	if r.Err == nil {
		t.Fatal("the upgrade was admitted although a pre-hook failed")
	}
	for _, want := range []string{"pre-hook", "pod " + ns + "/db-1", "container app", "cannot checkpoint: disk full", "every pod that was quiesced was thawed"} {
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
	if got := c.MustKubectl(t, "-n", ns, "get", "statefulset", "db", "-o", "jsonpath={.spec.template.spec.containers[0].resources.limits.memory}"); got != "" {
		t.Fatalf("resources = %q after a denied change; want the template unchanged", got)
	}
}

func TestAHangingPreHookTimesOutAndThaws(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	hooked(t, c, ns, map[string]string{
		"snapgate.io/pre-hook":     `["sh","-c","if [ $HOSTNAME = db-2 ]; then sleep 30; fi"]`,
		"snapgate.io/post-hook":    `["sh","-c","echo thawed > /data/thawed.txt"]`,
		"snapgate.io/hook-timeout": "2s",
	})
	r := change(t, c, ns)
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
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	hooked(t, c, ns, map[string]string{"snapgate.io/pre-hook": `["sh","-c","echo ran > /data/ran.txt"]`})
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
	r := change(t, c, ns, "--as=deployer")
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
	if r := change(t, c, ns); r.Err != nil {
		t.Fatalf("the change: %v\n%s", r.Err, r.Stderr)
	}
	// The admitted change replaces the pods; exec waits until they are back.
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	if got := files(t, c, ns, "db-0"); got != "ran.txt\n" {
		t.Fatalf("db-0 holds %q after an admin's upgrade; want the hook's file", got)
	}
}

func TestVeleroPodAnnotationsAreHonoured(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	manifest := appStatefulSet("db", 2, nil, map[string]string{
		"pre.hook.backup.velero.io/command":  `["sh","-c","echo velero > /data/velero-pre.txt"]`,
		"post.hook.backup.velero.io/command": `["sh","-c","echo velero > /data/velero-post.txt"]`,
	})
	c.Apply(t, ns, manifest)
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	if r := change(t, c, ns); r.Err != nil {
		t.Fatalf("the change: %v\n%s", r.Err, r.Stderr)
	}
	// The admitted change replaces the pods; exec waits until they are back.
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	if got := files(t, c, ns, "db-1"); got != "velero-post.txt\nvelero-pre.txt\n" {
		t.Fatalf("db-1 holds %q; want both of Velero's hooks to have run", got)
	}
	snaps := c.Snapshots(t, ns, "db")
	if got := restoredFilesOnNode(t, c, ns, snaps[0].Name); got != "velero-pre.txt\n" {
		t.Fatalf("snapshot holds %q; want the pre-hook's file only", got)
	}
}
