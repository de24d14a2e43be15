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

// walWriter is an application with its data and its WAL on two claims (real
// ext4 filesystems): it appends each number to the WAL, then to the data, as
// fast as it can, so that at any one instant the WAL's last number is the
// data's or one more.
const walWriter = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: ledger
  labels:
    snapgate.io/guard: enabled
spec:
  serviceName: ledger
  replicas: 1
  selector:
    matchLabels: {app: ledger}
  template:
    metadata:
      labels: {app: ledger}
    spec:
      containers:
      - name: ledger
        image: busybox:1.36
        command: ["sh", "-c", "i=0; while :; do i=$((i+1)); echo $i >>/wal/log; echo $i >>/data/log; done"]
        volumeMounts: [{name: data, mountPath: /data}, {name: wal, mountPath: /wal}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec: {accessModes: [ReadWriteOnce], storageClassName: hostpath-ext4, resources: {requests: {storage: 64Mi}}}
  - metadata: {name: wal}
    spec: {accessModes: [ReadWriteOnce], storageClassName: hostpath-ext4, resources: {requests: {storage: 64Mi}}}
`

// A reader of the restored pair: both PVCs from the set's two snapshots.
const ledgerReader = `apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: restored-%[1]s}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: hostpath-ext4
  resources: {requests: {storage: 64Mi}}
  dataSource: {apiGroup: snapshot.storage.k8s.io, kind: VolumeSnapshot, name: %[2]s}
`

const ledgerReaderPod = `apiVersion: v1
kind: Pod
metadata: {name: reader}
spec:
  containers:
  - name: reader
    image: busybox:1.36
    command: ["sleep", "3600"]
    volumeMounts: [{name: data, mountPath: /data}, {name: wal, mountPath: /wal}]
  volumes:
  - {name: data, persistentVolumeClaim: {claimName: restored-data}}
  - {name: wal, persistentVolumeClaim: {claimName: restored-wal}}
`

// A replica with its data and WAL on two claims is cut as one
// VolumeGroupSnapshot while it writes: the restored pair is of one instant
// (the WAL's last number is the data's or one more), and the group goes with
// its set.
func TestAReplicasDataAndWALAreCutAtOneInstant(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	c.Apply(t, ns, walWriter)
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/ledger", "--timeout=120s")
	framework.Eventually(t, 30*time.Second, "the ledger writes", func() error {
		if n := lastNumber(t, c, ns, "ledger-0", "/data/log"); n < 1000 {
			return fmt.Errorf("%d numbers written", n)
		}
		return nil
	})
	r := c.Run(t, "", c.Bin("snapgate"), "snapshot", "sts/ledger", "--kubeconfig", c.Kubeconfig, "-n", ns)
	if r.Err != nil {
		t.Fatalf("snapgate snapshot: %v\n%s%s", r.Err, r.Stdout, r.Stderr)
	}
	snaps := c.Snapshots(t, ns, "ledger")
	if len(snaps) != 2 {
		t.Fatalf("%d snapshots of the set, want 2", len(snaps))
	}
	set := snaps[0].Labels["snapgate.io/set"]
	byClaim := map[string]string{}
	for _, vs := range snaps {
		if g := vs.Annotations["snapgate.io/group"]; g != set+"-0" {
			t.Errorf("snapshot %s is of group %q, want the replica's, %s-0", vs.Name, g, set)
		}
		byClaim[vs.Labels["snapgate.io/claim"]] = vs.Name
	}
	if got := c.MustKubectl(t, "-n", ns, "get", "volumegroupsnapshots", "-l", "snapgate.io/set="+set, "-o", "jsonpath={.items[*].status.readyToUse}"); got != "true" {
		t.Errorf("the set's VolumeGroupSnapshot is ready %q, want one ready", got)
	}
	for _, claim := range []string{"data", "wal"} {
		c.Apply(t, ns, fmt.Sprintf(ledgerReader, claim, byClaim[claim]))
	}
	c.Apply(t, ns, ledgerReaderPod)
	c.MustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/reader", "--timeout=120s")
	data, wal := lastNumber(t, c, ns, "reader", "/data/log"), lastNumber(t, c, ns, "reader", "/wal/log")
	if data < 1000 || wal-data < 0 || wal-data > 1 {
		t.Errorf("restored: the data's last number %d, the WAL's %d; one instant has the WAL at the data's or one more", data, wal)
	}

	// Retention takes the group with its set.
	c.MustKubectl(t, "-n", ns, "delete", "pod/reader", "pvc/restored-data", "pvc/restored-wal", "--wait=true")
	c.MustKubectl(t, "-n", ns, "annotate", "statefulset/ledger", "snapgate.io/keep=1")
	if r := c.Run(t, "", c.Bin("snapgate"), "snapshot", "sts/ledger", "--kubeconfig", c.Kubeconfig, "-n", ns); r.Err != nil {
		t.Fatalf("a second snapshot: %v\n%s", r.Err, r.Stderr)
	}
	framework.Eventually(t, time.Minute, "the first set and its group pruned", func() error {
		if got := c.MustKubectl(t, "-n", ns, "get", "volumegroupsnapshots,volumesnapshots", "-l", "snapgate.io/set="+set, "-o", "name"); strings.TrimSpace(got) != "" {
			return fmt.Errorf("left: %s", got)
		}
		return nil
	})
}

// lastNumber is the last line of a log, as a number.
func lastNumber(t *testing.T, c *framework.Cluster, ns, pod, path string) int {
	t.Helper()
	out := c.MustKubectl(t, "-n", ns, "exec", pod, "--", "tail", "-n", "1", path)
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("%s:%s ends in %q", pod, path, out)
	}
	return n
}
