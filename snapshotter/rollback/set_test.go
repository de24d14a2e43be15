package rollback

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

func testSTS(replicas int32) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg", UID: "uid-1"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pg"}},
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pg", Image: "pg:17"}}}},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{
				ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: map[string]string{"tier": "db"}},
			}},
		},
	}
}

// snap is a ready snapshot of set pg-abc, taken of data-pg-<ordinal> when the
// StatefulSet ran pg:16 with 3 replicas.
func snap(ordinal string, mutate ...func(*snapv1.VolumeSnapshot)) snapv1.VolumeSnapshot {
	tmpl, _ := json.Marshal(corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pg", Image: "pg:16"}}}})
	spec, _ := json.Marshal(corev1.PersistentVolumeClaimSpec{
		VolumeName:  "pv-old-" + ordinal,
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
	})
	pvc, ready, content, size := "data-pg-"+ordinal, true, "content-"+ordinal, resource.MustParse("2Gi")
	vs := snapv1.VolumeSnapshot{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: pvc + "-abc", UID: "vs-" + "uid",
			Labels: map[string]string{snapshotter.LabelSet: "pg-abc", snapshotter.LabelStatefulSet: "pg", snapshotter.LabelOrdinal: ordinal, snapshotter.LabelClaim: "data", snapshotter.LabelManagedBy: snapshotter.ManagedBy},
			Annotations: map[string]string{
				snapshotter.AnnotationReason: "template", snapshotter.AnnotationPodTemplate: string(tmpl), snapshotter.AnnotationPVCSpec: string(spec),
				snapshotter.AnnotationReplicasBefore: "3", snapshotter.AnnotationReplicasAfter: "3", snapshotter.AnnotationStatefulSetUID: "uid-1",
			}},
		Spec:   snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
		Status: &snapv1.VolumeSnapshotStatus{ReadyToUse: &ready, BoundVolumeSnapshotContentName: &content, RestoreSize: &size},
	}
	for _, m := range mutate {
		m(&vs)
	}
	return vs
}

func boundOK(*snapv1.VolumeSnapshot) error { return nil }

// digestOnly makes a snapshot one of those of a set that carry the pod
// template's digest, not the template.
func digestOnly(vs *snapv1.VolumeSnapshot) {
	vs.Annotations[snapshotter.AnnotationPodTemplateDigest] = snapshotter.TemplateDigest(vs.Annotations[snapshotter.AnnotationPodTemplate])
	delete(vs.Annotations, snapshotter.AnnotationPodTemplate)
}

func TestCheckSetRestoresTemplateReplicasAndClaims(t *testing.T) {
	r, err := CheckSet(testSTS(3), "pg-abc", []snapv1.VolumeSnapshot{snap("2", digestOnly), snap("0"), snap("1", digestOnly)}, boundOK)
	if err != nil {
		t.Fatal(err)
	}
	if r.Template.Spec.Containers[0].Image != "pg:16" || r.Replicas != 3 || r.OtherUID {
		t.Fatalf("restore = image %s, %d replicas, other uid %v", r.Template.Spec.Containers[0].Image, r.Replicas, r.OtherUID)
	}
	var pvcs []string
	for _, c := range r.Claims {
		pvcs = append(pvcs, c.PVC+"<-"+c.Snapshot)
	}
	if got := strings.Join(pvcs, " "); got != "data-pg-0<-data-pg-0-abc data-pg-1<-data-pg-1-abc data-pg-2<-data-pg-2-abc" {
		t.Fatalf("claims = %s", got)
	}
}

func TestCheckSetRefuses(t *testing.T) {
	notReady := func(vs *snapv1.VolumeSnapshot) { f := false; vs.Status.ReadyToUse = &f }
	failed := func(vs *snapv1.VolumeSnapshot) {
		m := "disk full"
		vs.Status.ReadyToUse = nil
		vs.Status.Error = &snapv1.VolumeSnapshotError{Message: &m}
	}
	foreign := func(vs *snapv1.VolumeSnapshot) { vs.Labels[snapshotter.LabelStatefulSet] = "other" }
	wrongSource := func(vs *snapv1.VolumeSnapshot) { s := "data-other-1"; vs.Spec.Source.PersistentVolumeClaimName = &s }
	otherClaim := func(vs *snapv1.VolumeSnapshot) { vs.Labels[snapshotter.LabelClaim] = "logs" }
	otherReplicas := func(vs *snapv1.VolumeSnapshot) { vs.Annotations[snapshotter.AnnotationReplicasBefore] = "5" }
	otherTemplate := func(vs *snapv1.VolumeSnapshot) {
		vs.Annotations[snapshotter.AnnotationPodTemplate] = `{"spec":{"containers":[{"name":"pg","image":"pg:17"}]}}`
		digestOnly(vs)
	}
	tests := map[string]struct {
		snaps []snapv1.VolumeSnapshot
		bound func(*snapv1.VolumeSnapshot) error
		want  string
	}{
		"no snapshots":                 {nil, boundOK, `has no snapshot set "pg-abc"`},
		"a snapshot not ready":         {[]snapv1.VolumeSnapshot{snap("0"), snap("1", notReady), snap("2")}, boundOK, "data-pg-1-abc of set pg-abc is not ready to use yet"},
		"a failed snapshot":            {[]snapv1.VolumeSnapshot{snap("0", failed), snap("1"), snap("2")}, boundOK, "is failed: disk full"},
		"another StatefulSet's":        {[]snapv1.VolumeSnapshot{snap("0", foreign)}, boundOK, `belongs to statefulset "other", not pg`},
		"taken of another PVC":         {[]snapv1.VolumeSnapshot{snap("0"), snap("1", wrongSource), snap("2")}, boundOK, "was not taken of PVC data-pg-1"},
		"of an unknown claim":          {[]snapv1.VolumeSnapshot{snap("0", otherClaim)}, boundOK, `claim template "logs", which statefulset pg does not have`},
		"a replica missing":            {[]snapv1.VolumeSnapshot{snap("0"), snap("2")}, boundOK, "lacks snapshots of replicas 1"},
		"replica counts that disagree": {[]snapv1.VolumeSnapshot{snap("0"), snap("1", otherReplicas), snap("2")}, boundOK, "disagree about the replica count"},
		"templates that disagree":      {[]snapv1.VolumeSnapshot{snap("0"), snap("1", otherTemplate), snap("2", digestOnly)}, boundOK, "disagree about the pod template they record (data-pg-0-abc and data-pg-1-abc)"},
		"no template":                  {[]snapv1.VolumeSnapshot{snap("0", digestOnly), snap("1", digestOnly)}, boundOK, "no snapshot of set pg-abc carries the pod template"},
		"content bound to another":     {[]snapv1.VolumeSnapshot{snap("0"), snap("1"), snap("2")}, func(*snapv1.VolumeSnapshot) error { return errors.New("bound to x/y") }, "bound to x/y"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := CheckSet(testSTS(3), "pg-abc", tc.snaps, tc.bound)
			var r *Refusal
			if !errors.As(err, &r) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a refusal containing %q", err, tc.want)
			}
		})
	}
}

func TestCheckSetOfAScaleDownCoversTheRemovedReplicasOnly(t *testing.T) {
	down := func(vs *snapv1.VolumeSnapshot) {
		vs.Annotations[snapshotter.AnnotationReason] = string(policy.ReasonScaleDown)
		vs.Annotations[snapshotter.AnnotationReplicasAfter] = "1"
	}
	r, err := CheckSet(testSTS(1), "pg-abc", []snapv1.VolumeSnapshot{snap("1", down), snap("2", down)}, boundOK)
	if err != nil {
		t.Fatal(err)
	}
	if r.Replicas != 3 || len(r.Claims) != 2 {
		t.Fatalf("restore = %d replicas, %d claims; want 3 and 2", r.Replicas, len(r.Claims))
	}
	if _, err := CheckSet(testSTS(1), "pg-abc", []snapv1.VolumeSnapshot{snap("2", down)}, boundOK); err == nil {
		t.Fatal("a scale-down set without replica 1 was accepted")
	}
}

func TestResolveSetLatestSkipsSafetySetsAndUnreadySets(t *testing.T) {
	sets := []snapshotter.SetInfo{
		{Name: "pg-safety", Reason: "rollback", Snapshots: 2, Ready: 2},
		{Name: "pg-slow", Reason: "template", Snapshots: 2, Ready: 1},
		{Name: "pg-good", Reason: "template", Snapshots: 2, Ready: 2},
	}
	if got, err := ResolveSet("latest", sets, "pg"); err != nil || got != "pg-good" {
		t.Fatalf("latest = %q, %v; want pg-good", got, err)
	}
	if got, _ := ResolveSet("pg-safety", sets, "pg"); got != "pg-safety" {
		t.Fatalf("a named safety set resolved to %q", got)
	}
	if _, err := ResolveSet("latest", nil, "pg"); err == nil || !strings.Contains(err.Error(), "no snapshot sets") {
		t.Fatalf("latest of none: %v", err)
	}
}

func TestRestoredClaimIsTheRecordedSpecFromTheSnapshot(t *testing.T) {
	r, err := CheckSet(testSTS(3), "pg-abc", []snapv1.VolumeSnapshot{snap("0"), snap("1"), snap("2")}, boundOK)
	if err != nil {
		t.Fatal(err)
	}
	pvc := RestoredClaim(testSTS(3), r.Claims[1], "id-1")
	if pvc.Name != "data-pg-1" || pvc.Namespace != "db" || pvc.Spec.VolumeName != "" {
		t.Fatalf("pvc %s/%s on volume %q", pvc.Namespace, pvc.Name, pvc.Spec.VolumeName)
	}
	if ds := pvc.Spec.DataSource; ds == nil || ds.Kind != "VolumeSnapshot" || ds.Name != "data-pg-1-abc" || *ds.APIGroup != snapv1.GroupName {
		t.Fatalf("dataSource = %+v", ds)
	}
	// The snapshot needs 2Gi, more than the recorded 1Gi request.
	if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "2Gi" {
		t.Fatalf("storage = %s, want the restore size 2Gi", got.String())
	}
	if pvc.Labels["tier"] != "db" || pvc.Labels["app"] != "pg" {
		t.Fatalf("labels = %v; want the claim template's and the selector's", pvc.Labels)
	}
	if pvc.Annotations[snapshotter.AnnotationRestoredFrom] != "data-pg-1-abc" || pvc.Annotations[snapshotter.AnnotationRollbackID] != "id-1" {
		t.Fatalf("annotations = %v", pvc.Annotations)
	}
}

func TestCheckSetAcceptsAReplicaLeftOutBecauseItHeldNoData(t *testing.T) {
	leftOut := func(vs *snapv1.VolumeSnapshot) { vs.Annotations[snapshotter.AnnotationLeftOut] = "data-pg-1" }
	r, err := CheckSet(testSTS(3), "pg-abc", []snapv1.VolumeSnapshot{snap("0", leftOut), snap("2", leftOut)}, boundOK)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Claims) != 2 || r.Claims[0].PVC != "data-pg-0" || r.Claims[1].PVC != "data-pg-2" {
		t.Fatalf("claims = %+v; want data-pg-0 and data-pg-2 only (data-pg-1 is left as it is)", r.Claims)
	}
	otherLeftOut := func(vs *snapv1.VolumeSnapshot) { vs.Annotations[snapshotter.AnnotationLeftOut] = "data-pg-2" }
	if _, err := CheckSet(testSTS(3), "pg-abc", []snapv1.VolumeSnapshot{snap("0", otherLeftOut), snap("2", otherLeftOut)}, boundOK); err == nil {
		t.Fatal("a set lacking replica 1, which it did not leave out, was accepted")
	}
}
