package verify

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	kubefake "k8s.io/client-go/kubernetes/fake"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
	"github.com/snapgate/snapgate/snapshotter/presets"
)

// exec answers like a server that is still starting for its first fails calls;
// with hang, every call after the first lasts until its context ends (an
// exec cut short by the deadline).
type exec struct {
	mu    sync.Mutex
	fails int
	hang  bool
	ran   []string
}

func (e *exec) Exec(ctx context.Context, _, pod, container string, argv []string) ([]byte, []byte, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ran = append(e.ran, pod+"/"+container+" "+argv[0])
	if e.hang && len(e.ran) > 1 {
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}
	if e.fails > 0 {
		e.fails--
		return nil, []byte("the database system is starting up"), errors.New("command terminated with exit code 2")
	}
	return []byte("3 databases answer"), nil, nil
}

type rig struct {
	c      client.WithWatch
	v      *Verifier
	exec   *exec
	events *events.FakeRecorder
}

// newRig is StatefulSet db/pg (preset postgres, 2 replicas) with set pg-abc,
// and a Kube whose scratch StatefulSet is Ready when ready says so.
func newRig(t *testing.T, ready bool, annotations map[string]string) *rig {
	t.Helper()
	// The fake clientset serves no watch-list stream, which client-go's
	// informers ask for by default; the API server does.
	t.Setenv("KUBE_FEATURE_WatchListClient", "false")
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = snapv1.AddToScheme(s)
	tmpl := corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres", Image: "postgres:15",
		VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}}}}}}
	b, _ := json.Marshal(tmpl)
	spec, _ := json.Marshal(corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}}})
	replicas := int32(2)
	sts := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg", UID: "uid-1", Annotations: annotations},
		Spec: appsv1.StatefulSetSpec{Replicas: &replicas, Template: tmpl, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pg"}}}}
	objs := []client.Object{sts}
	for _, ord := range []string{"0", "1"} {
		pvc, yes := "data-pg-"+ord, true
		objs = append(objs, &snapv1.VolumeSnapshot{
			ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: pvc + "-abc",
				Labels: map[string]string{snapshotter.LabelSet: "pg-abc", snapshotter.LabelStatefulSet: "pg", snapshotter.LabelOrdinal: ord,
					snapshotter.LabelClaim: "data", snapshotter.LabelManagedBy: snapshotter.ManagedBy},
				Annotations: map[string]string{snapshotter.AnnotationPodTemplate: string(b), snapshotter.AnnotationPVCSpec: string(spec),
					snapshotter.AnnotationStatefulSetUID: "uid-1", snapshotter.AnnotationStatefulSetName: "pg"}},
			Spec:   snapv1.VolumeSnapshotSpec{Source: snapv1.VolumeSnapshotSource{PersistentVolumeClaimName: &pvc}},
			Status: &snapv1.VolumeSnapshotStatus{ReadyToUse: &yes},
		})
	}
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC))
	scratch := scratchName("pg-abc", clk.Now())
	for _, ord := range []string{"0", "1"} {
		objs = append(objs, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: scratch + "-" + ord}, Spec: tmpl.Spec})
	}
	for _, o := range objs[3:] {
		if err := c.Create(context.Background(), o); err != nil {
			t.Fatal(err)
		}
	}
	status := appsv1.StatefulSetStatus{}
	if ready {
		status.ReadyReplicas = 2
	}
	kube := kubefake.NewClientset(&appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: scratch}, Status: status})
	r := &rig{c: c, exec: &exec{}, events: events.NewFakeRecorder(10)}
	r.v = &Verifier{Client: c, Kube: kube, Exec: r.exec, Events: r.events, Clock: clk, Timeout: 2 * time.Second, Retry: 10 * time.Millisecond}
	return r
}

func (r *rig) snapshot(t *testing.T, name string) *snapv1.VolumeSnapshot {
	t.Helper()
	var vs snapv1.VolumeSnapshot
	if err := r.c.Get(context.Background(), types.NamespacedName{Namespace: "db", Name: name}, &vs); err != nil {
		t.Fatal(err)
	}
	return &vs
}

// A verify restores the set as a scratch StatefulSet, runs the preset's check
// in every pod (again while the server starts), marks every snapshot, tells
// it, and leaves no scratch object behind.
func TestVerifyChecksEveryRestoredPodRecordsAndCleansUp(t *testing.T) {
	r := newRig(t, true, map[string]string{policy.HookPreset: "postgres"})
	r.exec.fails = 2
	var told []string
	res, err := r.v.Verify(context.Background(), "db", "pg-abc", func(s string) { told = append(told, s) })
	if err != nil {
		t.Fatal(err)
	}
	if !res.Passed || res.How != "preset postgres: "+presets.All["postgres"].Checks {
		t.Fatalf("result %+v", res)
	}
	if got := strings.Join(r.exec.ran, ", "); got != strings.Repeat(res.Scratch.Name+"-0/postgres sh, ", 3)+res.Scratch.Name+"-1/postgres sh" {
		t.Errorf("checks ran: %s", got)
	}
	for _, name := range []string{"data-pg-0-abc", "data-pg-1-abc"} {
		a := r.snapshot(t, name).Annotations
		if a[snapshotter.AnnotationVerified] != "passed" || a[snapshotter.AnnotationVerifiedAt] != "2026-12-02T04:00:00Z" || a[snapshotter.AnnotationVerifiedHow] != res.How {
			t.Errorf("%s marked %v", name, a)
		}
	}
	if e := <-r.events.Events; !strings.Contains(e, "Normal SetVerified Set pg-abc restores: restored as "+res.Scratch.Name) {
		t.Errorf("event %q", e)
	}
	if err := r.c.Get(context.Background(), res.Scratch, &appsv1.StatefulSet{}); !apierrors.IsNotFound(err) {
		t.Errorf("the scratch StatefulSet after the verify: %v", err)
	}
	var pvcs corev1.PersistentVolumeClaimList
	if err := r.c.List(context.Background(), &pvcs); err != nil || len(pvcs.Items) != 0 {
		t.Errorf("PVCs left: %v %v", pvcs.Items, err)
	}
	if !strings.HasPrefix(told[0], "Restoring set pg-abc as scratch statefulset db/"+res.Scratch.Name) || !strings.HasPrefix(told[len(told)-1], "Deleted the scratch") {
		t.Errorf("told %q", told)
	}
}

// A check that never passes, and pods that are never Ready, are recorded as
// a failed verify, saying what failed.
func TestVerifyThatFailsIsRecordedAsFailed(t *testing.T) {
	r := newRig(t, true, map[string]string{policy.HookPreset: "postgres", policy.VerifyCommand: `["check-orders"]`})
	r.exec.fails = 1000
	res, err := r.v.Verify(context.Background(), "db", "pg-abc", func(string) {})
	if err != nil {
		t.Fatal(err)
	}
	if res.Passed || !strings.Contains(res.How, `snapgate.io/verify-command ["check-orders"]: pod `+res.Scratch.Name+"-0: command terminated with exit code 2: the database system is starting up") {
		t.Fatalf("result %+v", res)
	}
	if a := r.snapshot(t, "data-pg-1-abc").Annotations; a[snapshotter.AnnotationVerified] != "failed" {
		t.Errorf("marked %v", a)
	}
	if e := <-r.events.Events; !strings.Contains(e, "Warning SetVerifyFailed Set pg-abc did not verify") {
		t.Errorf("event %q", e)
	}

	// The check's own failure is what is told, not the deadline that cut its retry short.
	r = newRig(t, true, map[string]string{policy.HookPreset: "postgres", policy.VerifyCommand: `["check-orders"]`})
	r.exec.fails, r.exec.hang = 1, true
	res, err = r.v.Verify(context.Background(), "db", "pg-abc", func(string) {})
	if err != nil || res.Passed || !strings.Contains(res.How, "command terminated with exit code 2: the database system is starting up") {
		t.Fatalf("a retry cut short by the deadline: %v, %+v", err, res)
	}

	// With no run finished at all, the deadline is what is told, by name.
	r = newRig(t, true, map[string]string{policy.HookPreset: "postgres"})
	r.exec.hang, r.exec.ran = true, []string{"none before"}
	res, err = r.v.Verify(context.Background(), "db", "pg-abc", func(string) {})
	if err != nil || res.Passed || !strings.Contains(res.How, "no run of the check finished within 2s (snapgate verify --timeout gives it longer): context deadline exceeded") {
		t.Fatalf("a check that never finished: %v, %+v", err, res)
	}

	r = newRig(t, false, nil)
	res, err = r.v.Verify(context.Background(), "db", "pg-abc", func(string) {})
	if err != nil || res.Passed || !strings.Contains(res.How, "the restored pods were not Ready within 2s") {
		t.Fatalf("pods never Ready: %v, %+v", err, res)
	}
}

// A set that cannot be restored is no outcome: nothing is recorded.
func TestVerifyOfASetThatCannotBeRestoredRecordsNothing(t *testing.T) {
	r := newRig(t, true, map[string]string{policy.HookPreset: "postgres"})
	vs := r.snapshot(t, "data-pg-1-abc")
	no := false
	vs.Status.ReadyToUse = &no
	if err := r.c.Update(context.Background(), vs); err != nil {
		t.Fatal(err)
	}
	if _, err := r.v.Verify(context.Background(), "db", "pg-abc", func(string) {}); err == nil || !strings.Contains(err.Error(), "is not ready to use") {
		t.Fatalf("verify of a set not ready: %v", err)
	}
	if a := r.snapshot(t, "data-pg-0-abc").Annotations; a[snapshotter.AnnotationVerified] != "" {
		t.Errorf("marked %v", a)
	}
	if _, err := r.v.Verify(context.Background(), "db", "nope", func(string) {}); err == nil || !strings.Contains(err.Error(), `there is no snapshot set "nope"`) {
		t.Errorf("verify of no set: %v", err)
	}
}

func TestScratchNamesFitAPodsRevisionLabel(t *testing.T) {
	long := strings.Repeat("a", 54) + "-0123abcd"
	at := time.Date(2026, 12, 2, 4, 0, 0, 0, time.UTC)
	if n := scratchName(long, at); len(n) > 52 || n == scratchName(long, at.Add(time.Second)) {
		t.Errorf("scratch name %q (%d), the same for two verifies: %v", n, len(n), n == scratchName(long, at.Add(time.Second)))
	}
}
