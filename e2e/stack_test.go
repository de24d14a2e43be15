//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/snapgate/snapgate/e2e/framework"
)

// These tests prove the local stack itself: every later capability of snapgate is
// tested on it, so it must behave as a cluster does for the things snapgate uses.
// Their pods run on the real node, as real containers of busybox.

const pvcManifest = `
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources:
    requests:
      storage: 1Gi
---
apiVersion: v1
kind: Pod
metadata:
  name: writer
spec:
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: data
`

func TestVolumeSnapshotRestoresFileContents(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)

	c.Apply(t, ns, pvcManifest)
	c.MustKubectl(t, "-n", ns, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/data", "--timeout=60s")
	c.MustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/writer", "--timeout=60s")
	c.MustKubectl(t, "-n", ns, "exec", "writer", "--", "sh", "-c", "echo 'rows: 10000' > /data/table.txt")

	c.Apply(t, ns, `
apiVersion: snapshot.storage.k8s.io/v1
kind: VolumeSnapshot
metadata:
  name: data-snap
spec:
  source:
    persistentVolumeClaimName: data
`)
	c.MustKubectl(t, "-n", ns, "wait", "--for=jsonpath={.status.readyToUse}=true", "volumesnapshot/data-snap", "--timeout=60s")

	// What is written after the snapshot must not be in the restored volume.
	c.MustKubectl(t, "-n", ns, "exec", "writer", "--", "sh", "-c", "echo 'rows: 15000' > /data/table.txt")

	c.Apply(t, ns, framework.RestoredClaim("restored", "data-snap")+`---
apiVersion: v1
kind: Pod
metadata:
  name: reader
spec:
  containers:
  - name: app
    image: busybox:1.36
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
    volumeMounts:
    - name: data
      mountPath: /data
  volumes:
  - name: data
    persistentVolumeClaim:
      claimName: restored
`)
	c.MustKubectl(t, "-n", ns, "wait", "--for=jsonpath={.status.phase}=Bound", "pvc/restored", "--timeout=60s")
	c.MustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/reader", "--timeout=60s")
	if got := c.MustKubectl(t, "-n", ns, "exec", "reader", "--", "cat", "/data/table.txt"); got != "rows: 10000\n" {
		t.Fatalf("restored table.txt = %q, want the contents at snapshot time %q", got, "rows: 10000\n")
	}
	if got := c.MustKubectl(t, "-n", ns, "exec", "writer", "--", "cat", "/data/table.txt"); got != "rows: 15000\n" {
		t.Fatalf("source table.txt = %q, want it untouched by the restore", got)
	}
}

const statefulSetManifest = `
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  clusterIP: None
  selector:
    app: web
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 3
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: app
        image: busybox:1.36
        command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
        volumeMounts:
        - name: data
          mountPath: /data
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi
`

func TestStatefulSetRunsWithItsOwnVolumesAndExec(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)

	c.Apply(t, ns, statefulSetManifest)
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/web", "--timeout=90s")

	phases := c.MustKubectl(t, "-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}")
	if want := "web-0=Running web-1=Running web-2=Running "; phases != want {
		t.Fatalf("pods = %q, want %q", phases, want)
	}
	claims := c.MustKubectl(t, "-n", ns, "get", "pvc", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}")
	if want := "data-web-0=Bound data-web-1=Bound data-web-2=Bound "; claims != want {
		t.Fatalf("PVCs = %q, want %q", claims, want)
	}

	t.Run("each pod has its own volume, as a real container", func(t *testing.T) {
		if node := c.MustKubectl(t, "-n", ns, "get", "pod", "web-1", "-o", "jsonpath={.spec.nodeName}"); node != "snapgate-node" {
			t.Fatalf("web-1 runs on %q, want the real node", node)
		}
		out := c.MustKubectl(t, "-n", ns, "exec", "web-1", "--", "sh", "-c", "echo one > /data/owner.txt && echo $HOSTNAME && cat /data/owner.txt")
		if out != "web-1\none\n" {
			t.Fatalf("exec output = %q, want %q", out, "web-1\none\n")
		}
		// Another replica has its own volume: the file is not there.
		r := c.Kubectl(t, "-n", ns, "exec", "web-0", "--", "cat", "/data/owner.txt")
		if r.Err == nil {
			t.Fatalf("web-0 sees web-1's file (%q): volumes are not per pod", r.Stdout)
		}
		// And web-1's file outlives the pod: it is on the PVC, not in the pod.
		c.MustKubectl(t, "-n", ns, "delete", "pod", "web-1", "--wait=true")
		c.MustKubectl(t, "-n", ns, "wait", "--for=create", "pod/web-1", "--timeout=60s")
		c.MustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/web-1", "--timeout=60s")
		if got := c.MustKubectl(t, "-n", ns, "exec", "web-1", "--", "cat", "/data/owner.txt"); got != "one\n" {
			t.Fatalf("after the pod was recreated, owner.txt = %q, want %q", got, "one\n")
		}
	})

	t.Run("a failing command comes back as an error", func(t *testing.T) {
		r := c.Kubectl(t, "-n", ns, "exec", "web-0", "--", "sh", "-c", "echo oops >&2; exit 3")
		if r.Err == nil {
			t.Fatalf("a command that exits 3 succeeded: stdout %q", r.Stdout)
		}
		if !strings.Contains(r.Stderr, "oops") {
			t.Errorf("stderr = %q, want the command's own stderr in it", r.Stderr)
		}
	})
}

// TestKwokNamespacesPutTheirPodsOnKwokNodes: a test namespace made for kwok
// places a manifest's pods there without the manifest saying so, and kwok
// makes them Ready; an ordinary namespace's pods go to the real node (the
// tests above).
func TestKwokNamespacesPutTheirPodsOnKwokNodes(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.KwokNamespace(t)
	c.Apply(t, ns, statefulSetManifest)
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/web", "--timeout=90s")
	nodes := c.MustKubectl(t, "-n", ns, "get", "pods", "-l", "app=web", "-o", "jsonpath={range .items[*]}{.spec.nodeName} {end}")
	if want := "kwok-node-0 kwok-node-0 kwok-node-0 "; nodes != want {
		t.Fatalf("pods run on %q, want kwok's node for each", nodes)
	}
}
