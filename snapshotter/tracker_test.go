package snapshotter

import (
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestSetMayChange(t *testing.T) {
	taken := func() *snapv1.VolumeSnapshot {
		return &snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Name: "data-db-0-s1", Labels: map[string]string{LabelSet: "db-s1"}, Annotations: map[string]string{AnnotationReason: "template"}},
			Status:     &snapv1.VolumeSnapshotStatus{ReadyToUse: ptr.To(false)},
		}
	}
	for _, tc := range []struct {
		name   string
		update func(*snapv1.VolumeSnapshot)
		want   bool
	}{
		{"the snapshot controller's finalizers", func(vs *snapv1.VolumeSnapshot) {
			vs.Finalizers = []string{"snapshot.storage.kubernetes.io/volumesnapshot-as-source-protection"}
		}, false},
		{"the bound content's name", func(vs *snapv1.VolumeSnapshot) { vs.Status.BoundVolumeSnapshotContentName = ptr.To("snapcontent-1") }, false},
		{"a new resourceVersion only", func(vs *snapv1.VolumeSnapshot) { vs.ResourceVersion = "8" }, false},
		{"cut", func(vs *snapv1.VolumeSnapshot) { vs.Status.CreationTime = &metav1.Time{} }, true},
		{"ready", func(vs *snapv1.VolumeSnapshot) { vs.Status.ReadyToUse = ptr.To(true) }, true},
		{"its size", func(vs *snapv1.VolumeSnapshot) { vs.Status.RestoreSize = ptr.To(resource.MustParse("1Gi")) }, true},
		{"the driver's error", func(vs *snapv1.VolumeSnapshot) {
			vs.Status.Error = &snapv1.VolumeSnapshotError{Message: ptr.To("quota exceeded")}
		}, true},
		{"no status yet, then one", func(vs *snapv1.VolumeSnapshot) {}, true},
		{"a label", func(vs *snapv1.VolumeSnapshot) { vs.Labels[LabelSet] = "db-s2" }, true},
		{"an annotation (a finding, a verify)", func(vs *snapv1.VolumeSnapshot) { vs.Annotations[AnnotationFollowed] = FollowedReady }, true},
		{"deleted", func(vs *snapv1.VolumeSnapshot) { vs.DeletionTimestamp = &metav1.Time{} }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, updated := taken(), taken()
			if tc.name == "no status yet, then one" {
				old.Status = nil
			}
			tc.update(updated)
			if got := SetMayChange(old, updated); got != tc.want {
				t.Errorf("SetMayChange = %v, want %v", got, tc.want)
			}
		})
	}
}
