package rollback

import (
	"errors"
	"strconv"
	"strings"
	"testing"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/snapgate/snapgate/snapshotter"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

func TestCopyOfASetIsAStatefulSetOfItsOwnOnPVCsFromTheSnapshots(t *testing.T) {
	c, err := CopyOf("pg-abc", []snapv1.VolumeSnapshot{snap("2"), snap("0"), snap("1")}, db("pg-copy"), noContent(t))
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
		_, err := CopyOf("pg-abc", tc.snaps, db(tc.into), noContent(t))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", name, err, tc.want)
		}
	}
}

// A scale-down's set holds the removed replicas only: the copy starts at
// their first ordinal.
func TestCopyOfAScaleDownSetStartsAtItsFirstOrdinal(t *testing.T) {
	c, err := CopyOf("pg-abc", []snapv1.VolumeSnapshot{snap("1"), snap("2")}, db("pg-copy"), noContent(t))
	if err != nil {
		t.Fatal(err)
	}
	if o := c.StatefulSet.Spec.Ordinals; o == nil || o.Start != 1 || *c.StatefulSet.Spec.Replicas != 2 || c.Claims[0].Name != "data-pg-copy-1" {
		t.Fatalf("copy ordinals %v × %d, first PVC %s", o, *c.StatefulSet.Spec.Replicas, c.Claims[0].Name)
	}
}

func db(name string) types.NamespacedName { return types.NamespacedName{Namespace: "db", Name: name} }

// noContent is the ContentOf of a copy in the set's own namespace, which must
// not need one.
func noContent(t *testing.T) ContentOf {
	return func(vs *snapv1.VolumeSnapshot) (*snapv1.VolumeSnapshotContent, error) {
		t.Errorf("a copy in the set's namespace read the content of %s", vs.Name)
		return nil, errors.New("not needed")
	}
}

// Into another namespace, each snapshot is carried by its handle to a
// snapshot there, which can never delete the original's data.
func TestCopyOfIntoAnotherNamespaceCarriesEachSnapshotByItsHandle(t *testing.T) {
	class := "csi-hostpath"
	contentOf := func(vs *snapv1.VolumeSnapshot) (*snapv1.VolumeSnapshotContent, error) {
		handle := "handle-" + vs.Labels[snapshotter.LabelOrdinal]
		return &snapv1.VolumeSnapshotContent{
			ObjectMeta: metav1.ObjectMeta{Name: *vs.Status.BoundVolumeSnapshotContentName},
			Spec: snapv1.VolumeSnapshotContentSpec{Driver: "hostpath.csi.snapgate.io", DeletionPolicy: snapv1.VolumeSnapshotContentDelete,
				VolumeSnapshotClassName: &class},
			Status: &snapv1.VolumeSnapshotContentStatus{SnapshotHandle: &handle},
		}, nil
	}
	c, err := CopyOf("pg-abc", []snapv1.VolumeSnapshot{snap("1"), snap("0")}, types.NamespacedName{Namespace: "check", Name: "pg"}, contentOf)
	if err != nil {
		t.Fatal(err)
	}
	if c.StatefulSet.Namespace != "check" || len(c.Carried) != 2 || len(c.Claims) != 2 {
		t.Fatalf("copy in %s with %d carried, %d claims", c.StatefulSet.Namespace, len(c.Carried), len(c.Claims))
	}
	for i, k := range c.Carried {
		pvc, ord := c.Claims[i], strconv.Itoa(i)
		if pvc.Namespace != "check" || pvc.Spec.DataSource.Name != k.Snapshot.Name || k.Snapshot.Namespace != "check" {
			t.Errorf("PVC %s/%s restores from %s, carried as %s/%s", pvc.Namespace, pvc.Name, pvc.Spec.DataSource.Name, k.Snapshot.Namespace, k.Snapshot.Name)
		}
		s := k.Content.Spec
		if s.DeletionPolicy != snapv1.VolumeSnapshotContentRetain || *s.Source.SnapshotHandle != "handle-"+ord || s.Source.VolumeHandle != nil ||
			s.Driver != "hostpath.csi.snapgate.io" || *s.VolumeSnapshotClassName != class ||
			s.VolumeSnapshotRef.Namespace != "check" || s.VolumeSnapshotRef.Name != k.Snapshot.Name {
			t.Errorf("content %s: %+v", k.Content.Name, s)
		}
		if *k.Snapshot.Spec.Source.VolumeSnapshotContentName != k.Content.Name || k.From != "db/data-pg-"+ord+"-abc" ||
			k.Snapshot.Labels[snapshotter.LabelCopyOf] != "pg-abc" || k.Snapshot.Labels[snapshotter.LabelSet] != "" {
			t.Errorf("carried snapshot %s: source %v, from %s, labels %v", k.Snapshot.Name, k.Snapshot.Spec.Source, k.From, k.Snapshot.Labels)
		}
	}
	noHandle := func(vs *snapv1.VolumeSnapshot) (*snapv1.VolumeSnapshotContent, error) {
		return &snapv1.VolumeSnapshotContent{ObjectMeta: metav1.ObjectMeta{Name: "c"}}, nil
	}
	if _, err := CopyOf("pg-abc", []snapv1.VolumeSnapshot{snap("0")}, types.NamespacedName{Namespace: "check", Name: "pg"}, noHandle); err == nil ||
		!strings.Contains(err.Error(), "content c has no snapshot handle yet") {
		t.Errorf("a content with no handle: %v", err)
	}
}

func TestReferencesAreWhatThePodsCannotStartWithout(t *testing.T) {
	yes := true
	tmpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{
		ServiceAccountName: "pg",
		Containers: []corev1.Container{{Name: "db",
			Env: []corev1.EnvVar{
				{Name: "POSTGRES_PASSWORD", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "pg-secret"}, Key: "password"}}},
				{Name: "EXTRA", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "maybe"}, Optional: &yes}}},
			},
			EnvFrom: []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "pg-env"}}}},
		}},
		Volumes: []corev1.Volume{{Name: "conf", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "pg-conf"}}}}},
	}}
	var got []string
	for _, r := range References(tmpl) {
		got = append(got, r.Kind+" "+r.Name+" ("+r.By+")")
	}
	want := "ServiceAccount pg (serviceAccountName), Secret pg-secret (env POSTGRES_PASSWORD of container db), ConfigMap pg-env (envFrom of container db), ConfigMap pg-conf (volume conf)"
	if strings.Join(got, ", ") != want {
		t.Errorf("references:\n got %s\nwant %s", strings.Join(got, ", "), want)
	}
}
