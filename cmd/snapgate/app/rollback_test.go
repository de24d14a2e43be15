package app

import (
	"bytes"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/snapgate/snapgate/snapshotter"
)

func TestRollbackOptionsValidate(t *testing.T) {
	tests := map[string]struct {
		o   RollbackOptions
		err string
	}{
		"latest":         {o: RollbackOptions{To: "latest", Timeout: time.Minute}},
		"a set":          {o: RollbackOptions{To: "postgres-3f9a1c2b", Timeout: time.Minute}},
		"no set":         {o: RollbackOptions{Timeout: time.Minute}, err: `--to: name a snapshot set`},
		"not a set name": {o: RollbackOptions{To: "Postgres_1", Timeout: time.Minute}, err: `--to="Postgres_1"`},
		"a timeout of 0": {o: RollbackOptions{To: "latest"}, err: "--timeout=0s: must be above 0"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

func TestDescribeShowsWhatARollbackRestores(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	snap := func(ordinal, pvc string, ready bool) snapv1.VolumeSnapshot {
		size, content := resource.MustParse("1Gi"), "snapcontent-"+ordinal
		return snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: pvc + "-3f9a1c2b", CreationTimestamp: metav1.NewTime(now.Add(-2 * time.Minute)),
				// The label of a name longer than a label value is cut and hashed.
				Labels: map[string]string{snapshotter.LabelStatefulSet: "postgres-cut-5e1f", snapshotter.LabelOrdinal: ordinal},
				Annotations: map[string]string{
					snapshotter.AnnotationStatefulSetName: "postgres", snapshotter.AnnotationTakenAt: now.Add(-90 * time.Second).Format(time.RFC3339Nano),
					snapshotter.AnnotationReason: "template", snapshotter.AnnotationRequestedBy: "alice", snapshotter.AnnotationGeneration: "4",
					snapshotter.AnnotationReplicasBefore: "2", snapshotter.AnnotationReplicasAfter: "2", snapshotter.AnnotationRevision: "postgres-5d4b",
					snapshotter.AnnotationPodTemplate: `{"spec":{"containers":[{"name":"postgres","image":"postgres:16"}]}}`,
				}},
			Spec:   snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
			Status: &snapv1.VolumeSnapshotStatus{ReadyToUse: &ready, RestoreSize: &size, BoundVolumeSnapshotContentName: &content},
		}
	}
	o := &DescribeOptions{Set: "postgres-3f9a1c2b", Clock: clocktesting.NewFakePassiveClock(now)}
	var out bytes.Buffer
	if err := o.print(&out, "db", []snapv1.VolumeSnapshot{snap("1", "data-postgres-1", false), snap("0", "data-postgres-0", true)}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"StatefulSet:   db/postgres (generation 4)",
		"Reason:        template",
		"Taken:         2026-11-25T11:58:30Z (90s ago)",
		"Replicas:      2 before the change, 2 after",
		"Ready:         1/2",
		"Pod template:  postgres=postgres:16 (revision postgres-5d4b)",
		"  data-postgres-0-3f9a1c2b   data-postgres-0   0         true    1.0Gi   snapcontent-0",
		"  data-postgres-1-3f9a1c2b   data-postgres-1   1         false",
		"kubectl snapgate rollback sts/postgres -n db --to postgres-3f9a1c2b --wait",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("describe lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSetArgTakesASetAsKubectlWould(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{{[]string{"set", "pg-abc"}, "pg-abc"}, {[]string{"set/pg-abc"}, "pg-abc"}, {[]string{"sts/pg"}, ""}, {[]string{"set"}, ""}, {nil, ""}} {
		got, err := setArg(tc.args)
		if got != tc.want || (tc.want == "") != (err != nil) {
			t.Errorf("setArg(%q) = %q, %v; want %q", tc.args, got, err, tc.want)
		}
	}
}
