package rollback

import (
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

func TestCopyOfASetIsAStatefulSetOfItsOwnOnPVCsFromTheSnapshots(t *testing.T) {
	c, err := CopyOf("pg-abc", []snapv1.VolumeSnapshot{snap("2"), snap("0"), snap("1")}, "pg-copy")
	if err != nil {
		t.Fatal(err)
	}
	sts := c.StatefulSet
	if sts.Name != "pg-copy" || sts.Namespace != "db" || *sts.Spec.Replicas != 3 || sts.Spec.Ordinals != nil ||
		sts.Spec.Template.Spec.Containers[0].Image != "pg:16" || sts.Spec.ServiceName != "pg-copy" {
		t.Fatalf("copy = %s/%s × %d (ordinals %v), image %s, service %s", sts.Namespace, sts.Name, *sts.Spec.Replicas, sts.Spec.Ordinals,
			sts.Spec.Template.Spec.Containers[0].Image, sts.Spec.ServiceName)
	}
	if sts.Labels[policy.GuardLabel] != "disabled" || sts.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "pg-copy" ||
		sts.Spec.Template.Labels["app.kubernetes.io/name"] != "pg-copy" {
		t.Errorf("the copy is guarded or selects another's pods: labels %v, selector %v", sts.Labels, sts.Spec.Selector.MatchLabels)
	}
	if len(sts.Spec.VolumeClaimTemplates) != 1 || sts.Spec.VolumeClaimTemplates[0].Name != "data" || sts.Spec.VolumeClaimTemplates[0].Spec.VolumeName != "" {
		t.Errorf("claim templates %+v; want data, bound to nothing", sts.Spec.VolumeClaimTemplates)
	}
	var pvcs []string
	for _, p := range c.Claims {
		pvcs = append(pvcs, p.Name+"<-"+p.Spec.DataSource.Name)
		if p.Spec.VolumeName != "" || p.Labels["app.kubernetes.io/name"] != "pg-copy" || p.Spec.Resources.Requests.Storage().String() != "2Gi" {
			t.Errorf("PVC %s: volume %q, labels %v, size %s", p.Name, p.Spec.VolumeName, p.Labels, p.Spec.Resources.Requests.Storage())
		}
	}
	if got := strings.Join(pvcs, " "); got != "data-pg-copy-0<-data-pg-0-abc data-pg-copy-1<-data-pg-1-abc data-pg-copy-2<-data-pg-2-abc" {
		t.Errorf("PVCs %s", got)
	}
}

func TestCopyOfRefuses(t *testing.T) {
	notReady := snap("1", func(vs *snapv1.VolumeSnapshot) { f := false; vs.Status.ReadyToUse = &f })
	for name, tc := range map[string]struct {
		snaps []snapv1.VolumeSnapshot
		into  string
		want  string
	}{
		"no such set":           {nil, "copy", `there is no snapshot set "pg-abc"`},
		"a bad name":            {[]snapv1.VolumeSnapshot{snap("0")}, "Copy_1", `--into="Copy_1": must be a StatefulSet name`},
		"a snapshot not ready":  {[]snapv1.VolumeSnapshot{snap("0"), notReady}, "copy", "snapshot data-pg-1-abc of set pg-abc is not ready"},
		"a gap in the ordinals": {[]snapv1.VolumeSnapshot{snap("0"), snap("2")}, "copy", "not contiguous"},
	} {
		_, err := CopyOf("pg-abc", tc.snaps, tc.into)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", name, err, tc.want)
		}
	}
}

// A scale-down's set holds the removed replicas only: the copy starts at
// their first ordinal.
func TestCopyOfAScaleDownSetStartsAtItsFirstOrdinal(t *testing.T) {
	c, err := CopyOf("pg-abc", []snapv1.VolumeSnapshot{snap("1"), snap("2")}, "pg-copy")
	if err != nil {
		t.Fatal(err)
	}
	if o := c.StatefulSet.Spec.Ordinals; o == nil || o.Start != 1 || *c.StatefulSet.Spec.Replicas != 2 || c.Claims[0].Name != "data-pg-copy-1" {
		t.Fatalf("copy ordinals %v × %d, first PVC %s", o, *c.StatefulSet.Spec.Replicas, c.Claims[0].Name)
	}
}
