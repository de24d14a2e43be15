package hooks

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
	"github.com/snapgate/snapgate/snapshotter/presets"
)

// fakeExec records every command and fails or hangs as told, per pod.
type fakeExec struct {
	mu    sync.Mutex
	calls []string
	fail  map[string]error
	hang  map[string]bool
	// failPost makes the post-hook ("thaw") fail too.
	failPost bool
	// onFail, when set, runs as a command fails.
	onFail func(pod string)
}

func (f *fakeExec) Exec(ctx context.Context, _, pod, container string, argv []string) ([]byte, []byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, pod+"/"+container+":"+strings.Join(argv, " "))
	f.mu.Unlock()
	if f.hang[pod] {
		<-ctx.Done()
		return nil, nil, ctx.Err()
	}
	if err := f.fail[pod]; err != nil && (argv[0] != "thaw" || f.failPost) {
		if f.onFail != nil {
			f.onFail(pod)
		}
		return nil, []byte("FATAL: could not checkpoint\n"), err
	}
	return nil, nil, nil
}

func (f *fakeExec) ran(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.Contains(c, prefix) {
			out = append(out, strings.SplitN(c, "/", 2)[0])
		}
	}
	slices.Sort(out)
	return out
}

func statefulSet() *appsv1.StatefulSet {
	n := int32(3)
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: "pg", UID: "sts-uid"},
		Spec:       appsv1.StatefulSetSpec{Replicas: &n, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pg"}}},
	}
}

func pod(name string, owner ownerKind, ann map[string]string) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "db", Name: name, Annotations: ann, Labels: map[string]string{"app": "pg"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "postgres"}, {Name: "exporter"}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{
			{Name: "postgres", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
			{Name: "exporter", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		}},
	}
	if owner != "" {
		yes := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "pg", UID: "sts-uid", Controller: &yes}}
		if owner == "other" {
			p.OwnerReferences[0].UID = "other-uid"
		}
	}
	return p
}

// ownerKind is who controls a test pod: "sts", "other", or nobody ("").
type ownerKind string

func runner(t *testing.T, exec *fakeExec, allowExec bool, objs ...client.Object) *Runner {
	t.Helper()
	s := runtime.NewScheme()
	_ = clientgoscheme.AddToScheme(s)
	c := fake.NewClientBuilder().WithScheme(s).WithObjects(objs...).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if sar, ok := obj.(*authorizationv1.SubjectAccessReview); ok {
				// Only alice, the requester, holds the right: a review asked
				// for anyone else (snapgate's own account) is refused.
				a := sar.Spec.ResourceAttributes
				sar.Status.Allowed = allowExec && sar.Spec.User == "alice" && slices.Equal(sar.Spec.Groups, []string{"dba"}) &&
					a.Verb == "create" && a.Resource == "pods" && a.Subresource == "exec" && a.Namespace == "db"
				return nil
			}
			return c.Create(ctx, obj, opts...)
		},
	}).Build()
	return &Runner{Exec: exec, Client: c}
}

func plan(hooks policy.Hooks) *snapshotter.Plan {
	return &snapshotter.Plan{
		Policy: policy.Policy{Hooks: hooks},
		Change: snapshotter.Change{Reason: policy.ReasonTemplate, Old: statefulSet(), NewReplicas: 3,
			UserInfo: authenticationv1.UserInfo{Username: "alice", Groups: []string{"dba"}}},
	}
}

func TestQuiesceRunsInOwnedPodsAndThawsEveryAttemptedOne(t *testing.T) {
	exec := &fakeExec{fail: map[string]error{"pg-1": errors.New("command terminated with exit code 3")}}
	r := runner(t, exec, true,
		pod("pg-0", "sts", nil), pod("pg-1", "sts", nil), pod("pg-2", "other", nil))
	q, err := r.Quiesce(context.Background(), plan(policy.Hooks{Pre: []string{"freeze"}, Post: []string{"thaw"}}))
	var he *HookError
	if !errors.As(err, &he) || he.Pod != "db/pg-1" || he.Container != "postgres" || !strings.Contains(err.Error(), "exit code 3") ||
		!strings.Contains(err.Error(), "FATAL: could not checkpoint") {
		t.Fatalf("err = %v; want pod, container, exit status and stderr", err)
	}
	if got := exec.ran("freeze"); !slices.Equal(got, []string{"pg-0", "pg-1"}) {
		t.Fatalf("pre-hooks ran in %v; want pg-0 and pg-1 only (pg-2 belongs to another controller)", got)
	}
	if err := q.Thaw(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := exec.ran("thaw"); !slices.Equal(got, []string{"pg-0", "pg-1"}) {
		t.Fatalf("post-hooks ran in %v; want every pod whose pre-hook was attempted, the failed one too", got)
	}
}

func TestPodsThatAreNotRunningGetNoHooksAndAreNamed(t *testing.T) {
	pending := pod("pg-0", "sts", nil)
	pending.Status = corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable"}}}
	crashing := pod("pg-1", "sts", nil)
	crashing.Status.ContainerStatuses[0] = corev1.ContainerStatus{Name: "postgres", RestartCount: 4,
		State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}
	justRestarted := pod("pg-2", "sts", nil)
	justRestarted.Status.ContainerStatuses[0] = corev1.ContainerStatus{Name: "postgres", RestartCount: 5,
		State:                corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
		LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 1}}}
	deleting := pod("pg-3", "sts", nil)
	deleting.DeletionTimestamp, deleting.Finalizers = &metav1.Time{Time: time.Now()}, []string{"test"}
	sts := statefulSet()
	sts.Spec.Replicas = ptr.To(int32(5))
	exec := &fakeExec{}
	r := runner(t, exec, true, pending, crashing, justRestarted, deleting, pod("pg-4", "sts", nil))
	p := plan(policy.Hooks{Pre: []string{"freeze"}, Post: []string{"thaw"}})
	p.Change.Old = sts
	q, err := r.Quiesce(context.Background(), p)
	if err != nil {
		t.Fatalf("err = %v; want no denial: pods that are not running get no hooks", err)
	}
	if got := exec.ran("freeze"); !slices.Equal(got, []string{"pg-4"}) {
		t.Fatalf("pre-hooks ran in %v; want only pg-4, the one running", got)
	}
	want := []string{
		"pod pg-0 (it is Pending: Unschedulable)",
		"pod pg-1 (container postgres is waiting: CrashLoopBackOff)",
		"pod pg-2 (container postgres is crash-looping: 5 restarts, last exit Error, not ready)",
		"pod pg-3 (it is being deleted)",
	}
	if !slices.Equal(q.NotRunning, want) {
		t.Fatalf("not running = %q\nwant %q", q.NotRunning, want)
	}
}

func TestAPodThatStopsDuringItsPreHookIsSnapshottedAsItIs(t *testing.T) {
	exec := &fakeExec{fail: map[string]error{"pg-0": errors.New("command terminated with exit code 2")}}
	r := runner(t, exec, true, pod("pg-0", "sts", nil))
	exec.onFail = func(pod string) {
		// The container crashed while psql ran: the kubelet restarts it.
		var p corev1.Pod
		_ = r.Client.Get(context.Background(), client.ObjectKey{Namespace: "db", Name: pod}, &p)
		p.Status.ContainerStatuses[0].RestartCount++
		_ = r.Client.Status().Update(context.Background(), &p)
	}
	q, err := r.Quiesce(context.Background(), plan(policy.Hooks{Pre: []string{"freeze"}}))
	if err != nil {
		t.Fatalf("err = %v; want the pod counted as not running", err)
	}
	if !slices.Equal(q.NotRunning, []string{"pod pg-0 (container postgres restarted while its pre-hook ran)"}) {
		t.Fatalf("not running = %q", q.NotRunning)
	}
	// The runtime has no such container: it has exited, whatever the status says yet.
	exec.onFail = nil
	exec.fail = map[string]error{"pg-0": errors.New(`unable to upgrade streaming request: websocket: bad handshake (500 Internal Server Error): container not found ("postgres")`)}
	if q, err = r.Quiesce(context.Background(), plan(policy.Hooks{Pre: []string{"freeze"}})); err != nil ||
		!slices.Equal(q.NotRunning, []string{"pod pg-0 (container postgres had exited when its pre-hook ran: exec found no such container)"}) {
		t.Fatalf("err = %v, not running = %q; want the pod counted as not running", err, q.NotRunning)
	}
	// One that still runs as it did: its failure denies.
	exec.fail = map[string]error{"pg-0": errors.New("command terminated with exit code 2")}
	exec.onFail = nil
	if _, err := r.Quiesce(context.Background(), plan(policy.Hooks{Pre: []string{"freeze"}})); err == nil {
		t.Fatal("a failing pre-hook in a running pod was not an error")
	}
}

func TestHooksRunInTheContainerThatMountsTheDataWhenNoneIsNamed(t *testing.T) {
	meshed := pod("pg-0", "sts", nil)
	meshed.Spec.Containers = []corev1.Container{{Name: "istio-proxy"}, {Name: "postgres", VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/postgresql/data"}}}}
	meshed.Status.ContainerStatuses = []corev1.ContainerStatus{
		{Name: "istio-proxy", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
		{Name: "postgres", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}},
	}
	exec := &fakeExec{}
	r := runner(t, exec, true, meshed)
	p := plan(policy.Hooks{Preset: "postgres"})
	p.Change.Old.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}}}
	p.Change.Old.Spec.Replicas = ptr.To(int32(1))
	if _, err := r.Quiesce(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	if len(exec.calls) != 1 || !strings.HasPrefix(exec.calls[0], "pg-0/postgres:") {
		t.Fatalf("calls = %v; want the preset in container postgres, not the mesh's proxy", exec.calls)
	}
}

func TestVelerosPostHookRunsInItsOwnContainer(t *testing.T) {
	exec := &fakeExec{}
	r := runner(t, exec, true, pod("pg-0", "sts", map[string]string{
		veleroPre + "command": "freeze", veleroPre + "container": "exporter",
		veleroPost + "command": "thaw", veleroPost + "container": "postgres",
	}))
	p := plan(policy.Hooks{})
	p.Change.Old.Spec.Replicas = ptr.To(int32(1))
	q, err := r.Quiesce(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Thaw(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(exec.calls, []string{"pg-0/exporter:freeze", "pg-0/postgres:thaw"}) {
		t.Fatalf("calls = %v; want the pre-hook in exporter and the post-hook in postgres", exec.calls)
	}
}

func TestOnErrorContinueLetsTheSetGoOn(t *testing.T) {
	exec := &fakeExec{fail: map[string]error{"pg-0": errors.New("exit 1")}}
	r := runner(t, exec, true, pod("pg-0", "sts", nil))
	_, err := r.Quiesce(context.Background(), plan(policy.Hooks{Pre: []string{"freeze"}, OnError: "Continue"}))
	if err != nil {
		t.Fatalf("err = %v; want the failure ignored as on-error says", err)
	}
}

func TestATimeoutBoundsEachHook(t *testing.T) {
	exec := &fakeExec{hang: map[string]bool{"pg-0": true}}
	r := runner(t, exec, true, pod("pg-0", "sts", nil))
	start := time.Now()
	_, err := r.Quiesce(context.Background(), plan(policy.Hooks{Pre: []string{"freeze"}, Timeout: 50 * time.Millisecond}))
	if err == nil || !strings.Contains(err.Error(), "timed out after 50ms") || time.Since(start) > 2*time.Second {
		t.Fatalf("err = %v after %v; want a timeout at 50ms", err, time.Since(start))
	}
}

func TestAHookCutShortByTheBudgetSaysSo(t *testing.T) {
	exec := &fakeExec{hang: map[string]bool{"pg-0": true}}
	r := runner(t, exec, true, pod("pg-0", "sts", nil))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := r.Quiesce(ctx, plan(policy.Hooks{Pre: []string{"freeze"}, Timeout: 20 * time.Second}))
	if err == nil || !strings.Contains(err.Error(), "by the end of the request's time budget, before the hook's own timeout of 20s") {
		t.Fatalf("err = %v; want the budget named, not the hook's timeout", err)
	}
}

func TestAnnotationHooksNeedTheRequestersExecRight(t *testing.T) {
	exec := &fakeExec{}
	r := runner(t, exec, false, pod("pg-0", "sts", map[string]string{veleroPre + "command": `["sync"]`}))
	for name, hooks := range map[string]policy.Hooks{
		"snapgate annotations": {Pre: []string{"freeze"}},
		"Velero annotations":   {},
	} {
		_, err := r.Quiesce(context.Background(), plan(hooks))
		var de *DeniedError
		if !errors.As(err, &de) {
			t.Errorf("%s: err = %v; want a refusal", name, err)
		}
	}
	if len(exec.calls) != 0 {
		t.Fatalf("commands ran for a user without pods/exec: %v", exec.calls)
	}
	// A preset is snapgate's own command, not the user's: no right needed.
	if _, err := r.Quiesce(context.Background(), plan(policy.Hooks{Preset: "postgres", Container: "postgres"})); err != nil {
		t.Fatalf("preset: %v", err)
	}
	if got := exec.ran("CHECKPOINT"); !slices.Equal(got, []string{"pg-0"}) {
		t.Fatalf("preset ran in %v", got)
	}
}

func TestResolve(t *testing.T) {
	velero := pod("pg-0", "sts", map[string]string{
		veleroPre + "command": `["/bin/sh","-c","sync"]`, veleroPre + "container": "exporter", veleroPre + "timeout": "5s",
		veleroPre + "on-error": "Continue", veleroPost + "command": "/usr/bin/thaw",
	})
	tests := map[string]struct {
		hooks policy.Hooks
		pod   *corev1.Pod
		want  *Hook
		err   string
	}{
		"snapgate annotations win over a preset and Velero": {
			hooks: policy.Hooks{Pre: []string{"a"}, Preset: "postgres", Container: "exporter"}, pod: velero,
			want: &Hook{Pre: []string{"a"}, Container: "exporter", FromAnnotations: true},
		},
		"a preset wins over Velero and needs no exec right": {
			hooks: policy.Hooks{Preset: "postgres"}, pod: velero,
			want: &Hook{Pre: presets.All["postgres"].Pre},
		},
		"the mysql preset takes a read lock and releases it after the cut": {
			hooks: policy.Hooks{Preset: "mysql"}, pod: velero,
			want: &Hook{Pre: presets.All["mysql"].Pre, Post: presets.All["mysql"].Post},
		},
		"Velero's annotations with Velero's meaning": {
			pod: velero,
			want: &Hook{Pre: []string{"/bin/sh", "-c", "sync"}, Post: []string{"/usr/bin/thaw"}, Container: "exporter", Timeout: 5 * time.Second, Continue: true, FromAnnotations: true,
				PostTimeout: veleroTimeout},
		},
		"Velero's post-hook keys are its own": {
			pod: pod("pg-0", "sts", map[string]string{
				veleroPre + "command": "sync", veleroPre + "container": "exporter",
				veleroPost + "command": "thaw", veleroPost + "container": "postgres", veleroPost + "timeout": "3s",
			}),
			want: &Hook{Pre: []string{"sync"}, Post: []string{"thaw"}, Container: "exporter", Timeout: veleroTimeout, FromAnnotations: true,
				PostContainer: "postgres", PostTimeout: 3 * time.Second},
		},
		"Velero's unphased keys are a pre-hook": {
			pod: pod("pg-0", "sts", map[string]string{
				veleroLegacy + "command": `["/sbin/fsfreeze","--freeze","/data"]`, veleroLegacy + "container": "exporter",
				veleroLegacy + "timeout": "7s", veleroLegacy + "on-error": "Continue",
			}),
			want: &Hook{Pre: []string{"/sbin/fsfreeze", "--freeze", "/data"}, Container: "exporter", Timeout: 7 * time.Second, Continue: true, FromAnnotations: true},
		},
		"the unphased keys are not read when the phased command is there": {
			pod: pod("pg-0", "sts", map[string]string{
				veleroPre + "command": "sync", veleroLegacy + "command": "other", veleroLegacy + "container": "exporter",
			}),
			want: &Hook{Pre: []string{"sync"}, Timeout: veleroTimeout, FromAnnotations: true},
		},
		"a bad Velero timeout or on-error is a warning, and the default is used": {
			pod: pod("pg-0", "sts", map[string]string{veleroPre + "command": "sync", veleroPre + "timeout": "soon", veleroPre + "on-error": "Ignore"}),
			want: &Hook{Pre: []string{"sync"}, Timeout: veleroTimeout, FromAnnotations: true, Warnings: []string{
				`pod pg-0: pre.hook.backup.velero.io/timeout="soon" is not a duration above 0; using Velero's default of 30s`,
				`pod pg-0: pre.hook.backup.velero.io/on-error="Ignore" is neither Fail nor Continue; using Fail`,
			}},
		},
		"no hooks at all": {pod: pod("pg-0", "sts", nil)},
		"a bad Velero command names the annotation": {
			pod: pod("pg-0", "sts", map[string]string{veleroPre + "command": `["unterminated`}),
			err: "metadata.annotations[pre.hook.backup.velero.io/command]: Invalid value",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Resolve(tc.hooks, tc.pod)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (got == nil) != (tc.want == nil) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if got == nil {
				return
			}
			if !slices.Equal(got.Pre, tc.want.Pre) || !slices.Equal(got.Post, tc.want.Post) || got.Container != tc.want.Container ||
				got.Timeout != tc.want.Timeout || got.Continue != tc.want.Continue || got.FromAnnotations != tc.want.FromAnnotations ||
				got.PostContainer != tc.want.PostContainer || got.PostTimeout != tc.want.PostTimeout || !slices.Equal(got.Warnings, tc.want.Warnings) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// In a protected namespace (kube-system, snapgate's own) no hook runs,
// whatever the policy asks, and the warning says so.
func TestNoHooksRunInProtectedNamespaces(t *testing.T) {
	exec := &fakeExec{}
	r := runner(t, exec, true, pod("pg-0", "sts", nil))
	r.NoHooksIn = policy.ProtectedNamespaces("db")
	q, err := r.Quiesce(context.Background(), plan(policy.Hooks{Pre: []string{"freeze"}, Post: []string{"thaw"}}))
	if err != nil || q.Thaw != nil || len(exec.ran("")) != 0 {
		t.Fatalf("quiesce in a protected namespace: %v, thaw %v, ran %v", err, q.Thaw != nil, exec.ran(""))
	}
	if len(q.Warnings) != 1 || !strings.Contains(q.Warnings[0], "no hooks run in namespace db") {
		t.Errorf("warnings %q", q.Warnings)
	}
}

// podReads counts a client's reads of pods.
type podReads struct {
	client.Client
	gets, lists int
}

func (c *podReads) Get(ctx context.Context, key client.ObjectKey, obj client.Object, opts ...client.GetOption) error {
	if _, ok := obj.(*corev1.Pod); ok {
		c.gets++
	}
	return c.Client.Get(ctx, key, obj, opts...)
}

func (c *podReads) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if _, ok := list.(*corev1.PodList); ok {
		c.lists++
	}
	return c.Client.List(ctx, list, opts...)
}

// The pods to quiesce are read in one List, not a Get each: at 100 replicas
// the reads outran the client's rate limit inside the budget. A pod with the
// selector's labels that another controller owns is still left alone.
func TestQuiesceReadsThePodsInOneList(t *testing.T) {
	exec := &fakeExec{}
	r := runner(t, exec, true, pod("pg-0", "sts", nil), pod("pg-1", "sts", nil), pod("pg-2", "other", nil))
	reads := &podReads{Client: r.Client}
	r.Client = reads
	q, err := r.Quiesce(context.Background(), plan(policy.Hooks{Pre: []string{"freeze"}, Post: []string{"thaw"}}))
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Thaw(context.Background()); err != nil {
		t.Fatal(err)
	}
	if reads.gets != 0 || reads.lists != 1 {
		t.Errorf("pods read with %d Gets and %d Lists; want one List", reads.gets, reads.lists)
	}
	if got := exec.ran("freeze"); !slices.Equal(got, []string{"pg-0", "pg-1"}) {
		t.Errorf("pre-hooks ran in %v; want pg-0 and pg-1 (pg-2 belongs to another controller)", got)
	}
}

// TestQuiesceWithoutASelectorIsAnError: a StatefulSet with no selector would
// list no pod, and the set would be cut with no hook run; it is an error instead.
func TestQuiesceWithoutASelectorIsAnError(t *testing.T) {
	exec := &fakeExec{}
	r := runner(t, exec, true, pod("pg-0", "sts", nil))
	p := plan(policy.Hooks{Pre: []string{"freeze"}, Post: []string{"thaw"}})
	p.Change.Old.Spec.Selector = nil
	if _, err := r.Quiesce(context.Background(), p); err == nil || !strings.Contains(err.Error(), "no spec.selector") {
		t.Fatalf("err = %v; want one naming the missing spec.selector", err)
	}
	if got := exec.ran("freeze"); len(got) != 0 {
		t.Errorf("pre-hooks ran in %v", got)
	}
}
