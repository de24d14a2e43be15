package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	snapv1 "github.com/kubernetes-csi/external-snapshotter/client/v8/apis/volumesnapshot/v1"
	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// fakeTaker stands in for the engine: it takes sets instantly, or fails as told.
type fakeTaker struct {
	reader  client.Reader
	err     error
	prog    snapshotter.Progress
	taken   []*snapshotter.Plan
	skipped []string
	cleared int
	// hooks is what a Take that succeeds reports its hooks did.
	hooks snapshotter.HookOutcome
}

func (f *fakeTaker) Plan(ctx context.Context, c snapshotter.Change, p policy.Policy) (*snapshotter.Plan, error) {
	return snapshotter.PlanSet(ctx, f.reader, c, p)
}
func (f *fakeTaker) Take(_ context.Context, plan *snapshotter.Plan) (snapshotter.Progress, error) {
	f.taken = append(f.taken, plan)
	if f.err != nil {
		return f.prog, f.err
	}
	n := len(plan.Snapshots)
	return snapshotter.Progress{Total: n, Found: n, Cut: n, Ready: n, Hooks: f.hooks}, nil
}
func (f *fakeTaker) RecordTaken(context.Context, *snapshotter.Plan, snapshotter.Progress, time.Duration) {
}
func (f *fakeTaker) RecordSkipped(_ context.Context, c snapshotter.Change, reason string) {
	f.skipped = append(f.skipped, c.UserInfo.Username+": "+reason)
}
func (f *fakeTaker) ClearSkip(context.Context, *appsv1.StatefulSet) error { f.cleared++; return nil }

func testScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	_ = snapv1.AddToScheme(s)
	return s
}

func sts(replicas int32, image string, ann map[string]string) *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg", UID: "uid-1", ResourceVersion: "7", Annotations: ann, Labels: map[string]string{policy.GuardLabel: "enabled"}},
		Spec: appsv1.StatefulSetSpec{
			Replicas:             &replicas,
			Template:             corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "pg", Image: image}}}},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}},
		},
	}
}

func cluster(replicas int) []client.Object {
	objs := []client.Object{&snapv1.VolumeSnapshotClass{
		ObjectMeta: metav1.ObjectMeta{Name: "hostpath", Annotations: map[string]string{"snapshot.storage.kubernetes.io/is-default-class": "true"}},
		Driver:     "hostpath.csi", DeletionPolicy: snapv1.VolumeSnapshotContentDelete,
	}, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "db"}}}
	for i := 0; i < replicas; i++ {
		name := snapshotter.ClaimName("data", "pg", int32(i))
		objs = append(objs,
			&corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name}, Spec: corev1.PersistentVolumeClaimSpec{VolumeName: "pv-" + name}, Status: corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimBound}},
			&corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-" + name}, Spec: corev1.PersistentVolumeSpec{PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: "hostpath.csi", VolumeHandle: name}}}})
	}
	return objs
}

func raw(t testing.TB, obj any) runtime.RawExtension {
	b, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	return runtime.RawExtension{Raw: b}
}

func request(t testing.TB, op admissionv1.Operation, sub string, old, new any, dryRun bool) admission.Request {
	req := admissionv1.AdmissionRequest{
		UID: "req-1", Operation: op, Namespace: "db", Name: "pg", SubResource: sub, DryRun: &dryRun,
		Resource: metav1.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"},
		Kind:     metav1.GroupVersionKind{Group: "apps", Version: "v1", Kind: "StatefulSet"},
		UserInfo: authenticationv1.UserInfo{Username: "alice"},
	}
	if old != nil {
		req.OldObject = raw(t, old)
	}
	if new != nil {
		req.Object = raw(t, new)
	}
	return admission.Request{AdmissionRequest: req}
}

func newGuard(taker *fakeTaker, objs ...client.Object) *Guard {
	s := testScheme()
	r := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).Build()
	taker.reader = r
	return &Guard{Engine: taker, Reader: r}
}

func TestGuard(t *testing.T) {
	scale := func(n int32) *autoscalingv1.Scale {
		return &autoscalingv1.Scale{TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "Scale"}, ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg"}, Spec: autoscalingv1.ScaleSpec{Replicas: n}}
	}
	tests := map[string]struct {
		req     admission.Request
		taker   *fakeTaker
		objs    []client.Object
		allowed bool
		taken   string // PVCs of the set taken, "" for none
		warning string
		message string
		patch   []string
		skipped string
		cleared int // skips removed by the engine (a Scale cannot carry the removal)
	}{
		"a label-only update passes through without a set": {
			req:     request(t, admissionv1.Update, "", sts(3, "pg:16", nil), func() *appsv1.StatefulSet { s := sts(3, "pg:16", nil); s.Labels["x"] = "y"; return s }(), false),
			allowed: true,
		},
		"a scale-up passes through": {
			req: request(t, admissionv1.Update, "", sts(1, "pg:16", nil), sts(3, "pg:16", nil), false), allowed: true,
		},
		"a template change takes every replica and records the set": {
			req: request(t, admissionv1.Update, "", sts(3, "pg:16", nil), sts(3, "pg:17", nil), false), objs: cluster(3),
			allowed: true, taken: "data-pg-0 data-pg-1 data-pg-2",
			warning: "to roll back: kubectl annotate statefulset pg -n db snapgate.io/rollback-to=pg-",
			patch:   []string{`"add" "/metadata/annotations"`},
		},
		"a scale-down takes the removed replicas": {
			req: request(t, admissionv1.Update, "", sts(3, "pg:16", map[string]string{}), sts(1, "pg:16", map[string]string{"a": "b"}), false), objs: cluster(3),
			allowed: true, taken: "data-pg-1 data-pg-2",
			patch: []string{`"add" "/metadata/annotations/snapgate.io~1last-set"`, `"add" "/metadata/annotations/snapgate.io~1last-snapshots"`, `"add" "/metadata/annotations/snapgate.io~1last-reason"`},
		},
		"a delete takes every replica and cannot be patched": {
			req: request(t, admissionv1.Delete, "", sts(2, "pg:16", nil), nil, false), objs: cluster(2),
			allowed: true, taken: "data-pg-0 data-pg-1", warning: "took snapshot set pg-",
		},
		"a delete in a namespace being deleted passes, or the namespace would never go": {
			req: request(t, admissionv1.Delete, "", sts(2, "pg:16", nil), nil, false),
			objs: append(cluster(2)[2:], &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name: "db", DeletionTimestamp: &metav1.Time{Time: time.Now()}, Finalizers: []string{"kubernetes"},
			}}),
			allowed: true, warning: "namespace db is being deleted", skipped: "alice: namespace db is being deleted, with its PVCs and snapshots",
		},
		"snapgate.io/on without template lets a template change pass": {
			req:     request(t, admissionv1.Update, "", sts(2, "pg:16", map[string]string{policy.On: "delete"}), sts(2, "pg:17", map[string]string{policy.On: "delete"}), false),
			allowed: true,
		},
		"a dry run plans but takes nothing": {
			req: request(t, admissionv1.Update, "", sts(2, "pg:16", nil), sts(2, "pg:17", nil), true), objs: cluster(2),
			allowed: true, warning: "snapgate (dry run): a real request would take snapshot set pg-", message: "",
		},
		"a skip passes, is removed by the patch and is recorded": {
			req:     request(t, admissionv1.Update, "", sts(2, "pg:16", nil), sts(2, "pg:17", map[string]string{policy.Skip: "hotfix"}), false),
			allowed: true, warning: "WITHOUT snapshots", patch: []string{`"remove" "/metadata/annotations/snapgate.io~1skip"`}, skipped: `alice: snapgate.io/skip="hotfix"`,
		},
		"a PVC that does not exist is left out and named": {
			req: request(t, admissionv1.Update, "", sts(3, "pg:16", nil), sts(3, "pg:17", nil), false), objs: cluster(2),
			allowed: true, taken: "data-pg-0 data-pg-1", patch: []string{`"add" "/metadata/annotations"`},
			warning: "leaves out what holds no data: PVC data-pg-2 of replica 2 does not exist (it holds no data)",
		},
		"a StatefulSet none of whose PVCs exists passes, and says so": {
			req: request(t, admissionv1.Update, "", sts(2, "pg:16", nil), sts(2, "pg:17", nil), false), objs: cluster(0),
			allowed: true, warning: "WITHOUT snapshots: nothing to snapshot: PVC data-pg-0 of replica 0 does not exist",
			skipped: "alice: nothing to snapshot: PVC data-pg-0 of replica 0 does not exist (it holds no data); PVC data-pg-1 of replica 1 does not exist (it holds no data)",
		},
		"pods that got no hooks are named": {
			req: request(t, admissionv1.Update, "", sts(1, "pg:16", nil), sts(1, "pg:17", nil), false), objs: cluster(1),
			taker:   &fakeTaker{hooks: snapshotter.HookOutcome{NotRunning: []string{"pod pg-0 (it is Pending: Unschedulable)"}}},
			allowed: true, taken: "data-pg-0", patch: []string{`"add" "/metadata/annotations"`},
			warning: "pods that are not running got no hooks; their volumes were snapshotted as they are (crash-consistent): pod pg-0 (it is Pending: Unschedulable)",
		},
		"a failed pre-hook denies, saying which pods were thawed and which were not": {
			req: request(t, admissionv1.Update, "", sts(2, "pg:16", nil), sts(2, "pg:17", nil), false), objs: cluster(2),
			taker: &fakeTaker{err: &snapshotter.QuiesceError{Err: errors.New("pre-hook in pod db/pg-1 failed")}, prog: snapshotter.Progress{Total: 2, Hooks: snapshotter.HookOutcome{
				Quiesced: []string{"pg-0", "pg-1"}, ThawFailed: &snapshotter.ThawError{Pods: []string{"pg-1"}, Err: errors.New("UNLOCK failed")},
			}}},
			taken:   "data-pg-0 data-pg-1",
			message: "no snapshot was taken; pods thawed: pg-0; pods NOT thawed (their post-hook failed; snapgate retries it): pg-1 (UNLOCK failed)",
		},
		"a failed pre-hook after which every pod was thawed says so": {
			req: request(t, admissionv1.Update, "", sts(2, "pg:16", nil), sts(2, "pg:17", nil), false), objs: cluster(2),
			taker: &fakeTaker{err: &snapshotter.QuiesceError{Err: errors.New("pre-hook in pod db/pg-1 failed")}, prog: snapshotter.Progress{Total: 2, Hooks: snapshotter.HookOutcome{
				Quiesced: []string{"pg-0", "pg-1"},
			}}},
			taken:   "data-pg-0 data-pg-1",
			message: "every pod that was quiesced was thawed (pg-0, pg-1)",
		},
		"a post-hook that fails after the cut admits the change with a warning": {
			req: request(t, admissionv1.Update, "", sts(1, "pg:16", nil), sts(1, "pg:17", nil), false), objs: cluster(1),
			taker: &fakeTaker{hooks: snapshotter.HookOutcome{Quiesced: []string{"pg-0"},
				ThawFailed: &snapshotter.ThawError{Pods: []string{"pg-0"}, Err: errors.New("post-hook exited 1")}}},
			allowed: true, taken: "data-pg-0", patch: []string{`"add" "/metadata/annotations"`},
			warning: "the set is good, but the post-hook failed in pg-0, which may still be quiesced; snapgate retries it",
		},
		"a set not ready in the budget denies as retriable": {
			req: request(t, admissionv1.Update, "", sts(2, "pg:16", nil), sts(2, "pg:17", nil), false), objs: cluster(2),
			taker:   &fakeTaker{err: context.DeadlineExceeded, prog: snapshotter.Progress{Total: 2, Found: 2, Cut: 2, Ready: 1}},
			taken:   "data-pg-0 data-pg-1",
			message: "1/2 snapshots of statefulset db/pg ready after 0s (set pg-",
		},
		"a set not ready in the budget tells a Helm release how to go on": {
			req: request(t, admissionv1.Update, "", sts(1, "pg:16", map[string]string{HelmRelease: "shop"}), sts(1, "pg:17", map[string]string{HelmRelease: "shop"}), false), objs: cluster(1),
			taker:   &fakeTaker{err: context.DeadlineExceeded, prog: snapshotter.Progress{Total: 1, Found: 1, Cut: 1}},
			taken:   "data-pg-0",
			message: "if this was Helm rolling back, after `helm upgrade --atomic` or `helm rollback`, run `helm rollback shop -n db`",
		},
		"a driver error denies with the driver's message": {
			req: request(t, admissionv1.Update, "", sts(1, "pg:16", nil), sts(1, "pg:17", nil), false), objs: cluster(1),
			taker:   &fakeTaker{err: &snapshotter.SnapshotError{Snapshot: "s", PVC: "data-pg-0", Message: "quota exceeded"}},
			taken:   "data-pg-0",
			message: "snapshot s of PVC data-pg-0 failed: quota exceeded",
		},
		"any other failure denies and asks for a retry": {
			req: request(t, admissionv1.Update, "", sts(1, "pg:16", nil), sts(1, "pg:17", nil), false), objs: cluster(1),
			taker: &fakeTaker{err: errors.New("connection refused")}, taken: "data-pg-0",
			message: "connection refused); the change was not applied; run the same command again",
		},
		"a guarded scale-down through the scale subresource is taken and recorded later": {
			req:  request(t, admissionv1.Update, "scale", scale(3), scale(1), false),
			objs: append(cluster(3), sts(3, "pg:16", nil)), allowed: true, taken: "data-pg-1 data-pg-2",
		},
		"a scale-down of an unguarded StatefulSet passes": {
			req:  request(t, admissionv1.Update, "scale", scale(3), scale(1), false),
			objs: append(cluster(3), func() *appsv1.StatefulSet { s := sts(3, "pg:16", nil); s.Labels = nil; return s }()), allowed: true,
		},
		"a scale of a StatefulSet in a guarded namespace is guarded": {
			req: request(t, admissionv1.Update, "scale", scale(2), scale(1), false),
			objs: append(append(cluster(2)[:1], &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "db", Labels: map[string]string{policy.GuardLabel: "enabled"}}}),
				append(cluster(2)[2:], func() *appsv1.StatefulSet { s := sts(2, "pg:16", nil); s.Labels = nil; return s }())...),
			allowed: true, taken: "data-pg-1",
		},
		"the rollback controller's scale to 0 passes without a set": {
			req:  request(t, admissionv1.Update, "", sts(3, "pg:16", rolling(policy.PhaseRetaining)), sts(0, "pg:16", rolling(policy.PhaseScalingDown)), false),
			objs: cluster(3), allowed: true,
		},
		"the rollback controller's template restore passes without a set": {
			req:  request(t, admissionv1.Update, "", sts(0, "pg:17", rolling(policy.PhaseRestoring)), sts(3, "pg:16", rolling(policy.PhaseSucceeded)), false),
			objs: cluster(3), allowed: true,
		},
		"a user's template change during a rollback is denied": {
			req:  request(t, admissionv1.Update, "", sts(0, "pg:16", rolling(policy.PhaseReplacing)), sts(0, "pg:18", rolling(policy.PhaseReplacing)), false),
			objs: cluster(3), message: "is being rolled back to set pg-abc (ReplacingClaims",
		},
		"a user's scale-up during a rollback is denied": {
			req:  request(t, admissionv1.Update, "scale", scale(0), scale(3), false),
			objs: append(cluster(3), sts(0, "pg:16", rolling(policy.PhaseReplacing))), message: "left alone until the rollback ends",
		},
		"a changed status outside a rollback is no step: the change is guarded": {
			req:  request(t, admissionv1.Update, "", sts(3, "pg:16", rolling(policy.PhaseSucceeded)), sts(3, "pg:17", rolling(policy.PhaseFailed)), false),
			objs: cluster(3), allowed: true, taken: "data-pg-0 data-pg-1 data-pg-2", patch: []string{`"add" "/metadata/annotations/snapgate.io~1last-set"`, `"add" "/metadata/annotations/snapgate.io~1last-snapshots"`, `"add" "/metadata/annotations/snapgate.io~1last-reason"`},
		},
		"a template change under a policy that does not parse is denied, naming each bad annotation": {
			req:  request(t, admissionv1.Update, "", sts(2, "pg:16", broken()), sts(2, "pg:17", broken()), false),
			objs: cluster(2), message: `metadata.annotations[snapgate.io/on]: Unsupported value: "tempalte"`,
		},
		"the update that fixes a broken policy passes, guarded by the fixed one": {
			req:  request(t, admissionv1.Update, "", sts(2, "pg:16", broken()), sts(2, "pg:17", map[string]string{policy.On: "template"}), false),
			objs: cluster(2), allowed: true, taken: "data-pg-0 data-pg-1", patch: []string{`"add" "/metadata/annotations/snapgate.io~1last-set"`, `"add" "/metadata/annotations/snapgate.io~1last-snapshots"`, `"add" "/metadata/annotations/snapgate.io~1last-reason"`},
		},
		"the update that removes a broken policy passes, guarded by the defaults": {
			req:  request(t, admissionv1.Update, "", sts(1, "pg:16", broken()), sts(1, "pg:17", nil), false),
			objs: cluster(1), allowed: true, taken: "data-pg-0", patch: []string{`"add" "/metadata/annotations"`},
		},
		"a skip passes a broken policy: it never stands in the way of a fix": {
			req:     request(t, admissionv1.Update, "", sts(2, "pg:16", broken()), sts(2, "pg:17", merged(broken(), policy.Skip, "hotfix")), false),
			allowed: true, warning: "WITHOUT snapshots", patch: []string{`"remove" "/metadata/annotations/snapgate.io~1skip"`}, skipped: `alice: snapgate.io/skip="hotfix"`,
		},
		"a delete under a policy that does not parse is denied": {
			req:  request(t, admissionv1.Delete, "", sts(2, "pg:16", broken()), nil, false),
			objs: cluster(2), message: `metadata.annotations[snapgate.io/pre-hook]: Invalid value: "CHECKPOINT"`,
		},
		"a scale-down under a policy that does not parse is denied": {
			req:  request(t, admissionv1.Update, "scale", scale(2), scale(1), false),
			objs: append(cluster(2), sts(2, "pg:16", broken())), message: "its snapgate annotations cannot be read",
		},
		"a scale-down of an unguarded StatefulSet with a broken policy passes": {
			req:  request(t, admissionv1.Update, "scale", scale(2), scale(1), false),
			objs: append(cluster(2), func() *appsv1.StatefulSet { s := sts(2, "pg:16", broken()); s.Labels = nil; return s }()), allowed: true,
		},
		"a rollout restart is no upgrade: no set, and the warning says so": {
			req:  request(t, admissionv1.Update, "", sts(2, "pg:16", nil), restarted(sts(2, "pg:16", nil), "2026-12-01T10:00:00Z"), false),
			objs: cluster(2), allowed: true,
			warning: "no snapshot set is taken for a restart; add restart to snapgate.io/on",
		},
		"a rollout restart is snapshotted when snapgate.io/on names restart": {
			req: request(t, admissionv1.Update, "", sts(1, "pg:16", map[string]string{policy.On: "template,restart"}),
				restarted(sts(1, "pg:16", map[string]string{policy.On: "template,restart"}), "2026-12-01T10:00:00Z"), false),
			objs: cluster(1), allowed: true, taken: "data-pg-0", warning: "(1 snapshot, ready) before this restart change",
			patch: []string{`"add" "/metadata/annotations/snapgate.io~1last-set"`, `"add" "/metadata/annotations/snapgate.io~1last-snapshots"`, `"add" "/metadata/annotations/snapgate.io~1last-reason"`},
		},
		"a skip on a scaled StatefulSet passes and is cleared": {
			req:  request(t, admissionv1.Update, "scale", scale(2), scale(1), false),
			objs: append(cluster(2), sts(2, "pg:16", map[string]string{policy.Skip: "drain"})), allowed: true, skipped: `alice: snapgate.io/skip="drain"`, warning: "WITHOUT snapshots",
			cleared: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			taker := tc.taker
			if taker == nil {
				taker = &fakeTaker{}
			}
			resp := newGuard(taker, tc.objs...).Handle(context.Background(), tc.req)
			if resp.Allowed != tc.allowed {
				t.Fatalf("allowed = %v, want %v (%v)", resp.Allowed, tc.allowed, resp.Result)
			}
			var taken []string
			for _, p := range taker.taken {
				for _, s := range p.Snapshots {
					taken = append(taken, s.PVC)
				}
			}
			if got := strings.Join(taken, " "); got != tc.taken {
				t.Errorf("took %q, want %q", got, tc.taken)
			}
			if tc.warning != "" && !strings.Contains(strings.Join(resp.Warnings, "\n"), tc.warning) {
				t.Errorf("warnings = %q, want %q", resp.Warnings, tc.warning)
			}
			if tc.message != "" && (resp.Result == nil || !strings.Contains(resp.Result.Message, tc.message)) {
				t.Errorf("message = %v, want %q", resp.Result, tc.message)
			}
			var ops []string
			for _, op := range resp.Patches {
				ops = append(ops, `"`+op.Operation+`" "`+op.Path+`"`)
			}
			if strings.Join(ops, ",") != strings.Join(tc.patch, ",") {
				t.Errorf("patch = %v, want %v", ops, tc.patch)
			}
			if got := strings.Join(taker.skipped, ","); got != tc.skipped {
				t.Errorf("skips recorded = %q, want %q", got, tc.skipped)
			}
			if taker.cleared != tc.cleared {
				t.Errorf("skips cleared = %d, want %d", taker.cleared, tc.cleared)
			}
		})
	}
}

// broken is a policy written while snapgate was down: a typo in snapgate.io/on
// and a pre-hook that is not a JSON list.
func broken() map[string]string {
	return map[string]string{policy.On: "tempalte", policy.PreHook: "CHECKPOINT"}
}

// restarted is s after `kubectl rollout restart` at t.
func restarted(s *appsv1.StatefulSet, t string) *appsv1.StatefulSet {
	s.Spec.Template.Annotations = map[string]string{RestartedAt: t}
	return s
}

func merged(m map[string]string, k, v string) map[string]string { m[k] = v; return m }

// rolling is the annotations of a StatefulSet whose rollback is at phase.
func rolling(phase policy.RollbackPhase) map[string]string {
	st := policy.RollbackState{Request: "latest", Set: "pg-abc", Phase: phase, ID: "t0"}
	return map[string]string{policy.RollbackStatus: st.String()}
}

func TestRecordPatchCarriesTheSet(t *testing.T) {
	plan := &snapshotter.Plan{Set: "pg-3f9a1c2b", Reason: policy.ReasonTemplate, Snapshots: []snapshotter.PlannedSnapshot{{Name: "data-pg-0-3f9a1c2b", PVC: "data-pg-0"}}}
	ops, err := recordPatch(map[string]string{"keep": "me"}, plan)
	if err != nil {
		t.Fatal(err)
	}
	want := []jsonpatch.JsonPatchOperation{
		{Operation: "add", Path: "/metadata/annotations/snapgate.io~1last-set", Value: "pg-3f9a1c2b"},
		{Operation: "add", Path: "/metadata/annotations/snapgate.io~1last-snapshots", Value: `{"data-pg-0":"data-pg-0-3f9a1c2b"}`},
		{Operation: "add", Path: "/metadata/annotations/snapgate.io~1last-reason", Value: "template"},
	}
	if len(ops) != len(want) {
		t.Fatalf("ops = %v", ops)
	}
	for i := range want {
		if ops[i].Operation != want[i].Operation || ops[i].Path != want[i].Path || ops[i].Value != want[i].Value {
			t.Errorf("op %d = %+v, want %+v", i, ops[i], want[i])
		}
	}
}

func TestClassify(t *testing.T) {
	base := sts(3, "pg:16", nil)
	tests := map[string]struct {
		new  *appsv1.StatefulSet
		want policy.Reason
	}{
		"same spec":                 {sts(3, "pg:16", map[string]string{"a": "b"}), ""},
		"new image":                 {sts(3, "pg:17", nil), policy.ReasonTemplate},
		"fewer replicas":            {sts(1, "pg:16", nil), policy.ReasonScaleDown},
		"more replicas":             {sts(5, "pg:16", nil), ""},
		"new image, fewer replicas": {sts(1, "pg:17", nil), policy.ReasonTemplate},
		"restarted":                 {restarted(sts(3, "pg:16", nil), "t1"), policy.ReasonRestart},
		"restarted, fewer replicas": {restarted(sts(2, "pg:16", nil), "t1"), policy.ReasonScaleDown},
		"restarted, new image":      {restarted(sts(3, "pg:17", nil), "t1"), policy.ReasonTemplate},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := Classify(base, tc.new); got != tc.want {
				t.Fatalf("Classify = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestValidator(t *testing.T) {
	v := &Validator{}
	ok := v.Handle(context.Background(), request(t, admissionv1.Create, "", nil, sts(1, "pg:16", map[string]string{policy.WaitFor: "cut"}), false))
	if !ok.Allowed {
		t.Fatalf("good annotations denied: %v", ok.Result)
	}
	rb := v.Handle(context.Background(), request(t, admissionv1.Update, "", sts(1, "pg:16", nil), sts(1, "pg:16", map[string]string{policy.RollbackTo: "latest"}), false))
	if !rb.Allowed || len(rb.Warnings) != 1 || !strings.Contains(rb.Warnings[0], "scaled to 0") {
		t.Fatalf("rollback-to: allowed %v, warnings %q; want allowed with a warning of what a rollback does", rb.Allowed, rb.Warnings)
	}
	again := v.Handle(context.Background(), request(t, admissionv1.Update, "", sts(1, "pg:16", map[string]string{policy.RollbackTo: "latest"}), sts(1, "pg:16", map[string]string{policy.RollbackTo: "latest"}), false))
	if !again.Allowed || len(again.Warnings) != 0 {
		t.Fatalf("an update that keeps the rollback-to: allowed %v, warnings %q; want allowed, no warning", again.Allowed, again.Warnings)
	}
	bad := v.Handle(context.Background(), request(t, admissionv1.Update, "", sts(1, "pg:16", nil), sts(1, "pg:16", map[string]string{policy.WaitFor: "soon", policy.Keep: "0"}), false))
	if bad.Allowed || !strings.Contains(bad.Result.Message, "snapgate.io/wait-for") || !strings.Contains(bad.Result.Message, "snapgate.io/keep") {
		t.Fatalf("bad annotations: %v", bad.Result)
	}
}

// BenchmarkPassThrough is an update that needs no snapshot and reaches the
// handler anyway (a guarded StatefulSet whose snapgate.io/on excludes it), on
// the objects as the API server sends them: one of make bench's StatefulSets
// with its managedFields and status, and the same with a new template
// annotation. The decision costs decoding both and a comparison.
func BenchmarkPassThrough(b *testing.B) {
	g := newGuard(&fakeTaker{})
	old, err := os.ReadFile("testdata/statefulset.json")
	if err != nil {
		b.Fatal(err)
	}
	var updated appsv1.StatefulSet
	if err := json.Unmarshal(old, &updated); err != nil {
		b.Fatal(err)
	}
	if updated.Annotations[policy.On] != "delete" {
		b.Fatalf("testdata/statefulset.json: %s=%q; want delete, so that an upgrade passes through", policy.On, updated.Annotations[policy.On])
	}
	metav1.SetMetaDataAnnotation(&updated.Spec.Template.ObjectMeta, "bench/round", "2")
	req := request(b, admissionv1.Update, "", nil, &updated, false)
	req.OldObject = runtime.RawExtension{Raw: old}
	b.ReportAllocs()
	for b.Loop() {
		if resp := g.Handle(context.Background(), req); !resp.Allowed || len(resp.Patches) > 0 {
			b.Fatalf("allowed %v, patches %v; want allowed as it is", resp.Allowed, resp.Patches)
		}
	}
}

func TestDecodeRefusesAnotherKind(t *testing.T) {
	var s appsv1.StatefulSet
	scale := &autoscalingv1.Scale{TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "Scale"}}
	err := decode(raw(t, scale), &s, statefulSetKind)
	if err == nil || !strings.Contains(err.Error(), "autoscaling/v1, Kind=Scale") {
		t.Fatalf("a Scale decoded as a StatefulSet: %v; want an error naming the Scale", err)
	}
	if err := decode(runtime.RawExtension{}, &s, statefulSetKind); err == nil {
		t.Fatal("no object decoded without an error")
	}
	if err := decode(runtime.RawExtension{Raw: []byte(`{"spec":{"replicas":"three"}}`)}, &s, statefulSetKind); err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Fatalf("a string for replicas: %v; want an error naming the field", err)
	}
	// As the API server's own serializer: field names are case-sensitive.
	s = appsv1.StatefulSet{}
	if err := decode(runtime.RawExtension{Raw: []byte(`{"apiVersion":"apps/v1","kind":"StatefulSet","spec":{"Replicas":3}}`)}, &s, statefulSetKind); err != nil || s.Spec.Replicas != nil {
		t.Fatalf(`"Replicas" decoded into spec.replicas (%v, %v); want it ignored`, s.Spec.Replicas, err)
	}
}

// TestDecodeStatefulSetKeepsAllButManagedFields: the StatefulSet as the API
// server sends it decodes to the same object as a full decode, less its
// managedFields, and bad JSON inside the skipped managedFields is still refused.
func TestDecodeStatefulSetKeepsAllButManagedFields(t *testing.T) {
	b, err := os.ReadFile("testdata/statefulset.json")
	if err != nil {
		t.Fatal(err)
	}
	var want appsv1.StatefulSet
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	if len(want.ManagedFields) == 0 {
		t.Fatal("testdata/statefulset.json has no managedFields; it must be an object as the API server sends it")
	}
	// The engine reads the old object's status.updateRevision.
	want.Status.UpdateRevision = "db-5d8f7c9b6"
	if b, err = json.Marshal(&want); err != nil {
		t.Fatal(err)
	}
	want.ManagedFields = nil
	var got appsv1.StatefulSet
	if err := decodeStatefulSet(runtime.RawExtension{Raw: b}, &got); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got, want) {
		t.Fatalf("decodeStatefulSet differs from a full decode:\ngot  %+v\nwant %+v", got, want)
	}
	bad := []byte(`{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"db","managedFields":[{"manager":}]}}`)
	if err := decodeStatefulSet(runtime.RawExtension{Raw: bad}, &got); err == nil {
		t.Fatal("malformed managedFields decoded without an error")
	}
	scale := &autoscalingv1.Scale{TypeMeta: metav1.TypeMeta{APIVersion: "autoscaling/v1", Kind: "Scale"}}
	if err := decodeStatefulSet(raw(t, scale), &got); err == nil || !strings.Contains(err.Error(), "Kind=Scale") {
		t.Fatalf("a Scale decoded as a StatefulSet: %v", err)
	}
}
