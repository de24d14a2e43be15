package hooks

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/events"
	clocktesting "k8s.io/utils/clock/testing"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

func records(t *testing.T, c client.Client) []coordinationv1.Lease {
	t.Helper()
	var list coordinationv1.LeaseList
	if err := c.List(context.Background(), &list, client.InNamespace("snapgate-system"), client.MatchingLabels{snapshotter.LabelComponent: snapshotter.ComponentInFlight}); err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func owedPods(t *testing.T, l coordinationv1.Lease) []string {
	t.Helper()
	var o Owing
	if err := json.Unmarshal([]byte(l.Annotations[snapshotter.AnnotationOwed]), &o); err != nil {
		t.Fatal(err)
	}
	var pods []string
	for _, p := range o.Pods {
		pods = append(pods, p.Pod)
	}
	slices.Sort(pods)
	return pods
}

func TestPostHooksInFlightAreRecordedUntilTheyRan(t *testing.T) {
	exec := &fakeExec{}
	r := runner(t, exec, true, pod("pg-0", "sts", nil), pod("pg-1", "sts", nil))
	clk := clocktesting.NewFakeClock(time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC))
	r.InFlight = &InFlight{Client: r.Client, Namespace: "snapgate-system", Identity: "snapgate-a", Duration: 30 * time.Second, Clock: clk}
	q, err := r.Quiesce(context.Background(), plan(policy.Hooks{Pre: []string{"freeze"}, Post: []string{"thaw"}}))
	if err != nil {
		t.Fatal(err)
	}
	recs := records(t, r.Client)
	if len(recs) != 1 || !slices.Equal(owedPods(t, recs[0]), []string{"pg-0", "pg-1"}) ||
		ptr.Deref(recs[0].Spec.HolderIdentity, "") != "snapgate-a" {
		t.Fatalf("records while frozen = %+v; want one, held by snapgate-a, owing pg-0 and pg-1", recs)
	}
	first := recs[0].Spec.RenewTime.Time
	// A third of the record's life later, it is renewed.
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	clk.Step(10 * time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for recs = records(t, r.Client); !recs[0].Spec.RenewTime.After(first); recs = records(t, r.Client) {
		if time.Now().After(deadline) {
			t.Fatalf("the record was not renewed while its hooks were in flight")
		}
		time.Sleep(time.Millisecond)
	}
	if got := recs[0].Spec.RenewTime.Sub(first); got != 10*time.Second {
		t.Fatalf("renewed %s after it was written, want 10s", got)
	}
	if err := q.Thaw(context.Background()); err != nil {
		t.Fatal(err)
	}
	if recs := records(t, r.Client); len(recs) != 0 {
		t.Fatalf("records after every post-hook ran = %d; want none", len(recs))
	}
}

func TestAFailedPostHookStaysOwed(t *testing.T) {
	exec := &fakeExec{}
	r := runner(t, exec, true, pod("pg-0", "sts", nil), pod("pg-1", "sts", nil))
	r.InFlight = &InFlight{Client: r.Client, Namespace: "snapgate-system", Identity: "snapgate-a", Duration: time.Minute}
	q, err := r.Quiesce(context.Background(), plan(policy.Hooks{Pre: []string{"freeze"}, Post: []string{"thaw"}}))
	if err != nil {
		t.Fatal(err)
	}
	exec.fail = map[string]error{"pg-1": errors.New("exit 1")}
	exec.failPost = true
	if err := q.Thaw(context.Background()); err == nil {
		t.Fatal("thaw reported no failure")
	}
	recs := records(t, r.Client)
	if len(recs) != 1 || !slices.Equal(owedPods(t, recs[0]), []string{"pg-1"}) {
		t.Fatalf("records = %+v; want one owing pg-1 only", recs)
	}
}

// record stores an in-flight record as a replica that died would have left it.
func record(t *testing.T, c client.Client, renewed time.Time, owing Owing) {
	t.Helper()
	b, _ := json.Marshal(owing)
	at := metav1.NewMicroTime(renewed)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "snapgate-hooks-", Namespace: "snapgate-system",
			Labels: map[string]string{snapshotter.LabelComponent: snapshotter.ComponentInFlight, "app.kubernetes.io/managed-by": "snapgate"}, Annotations: map[string]string{snapshotter.AnnotationOwed: string(b)}},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("snapgate-dead"), LeaseDurationSeconds: ptr.To(int32(15)), AcquireTime: &at, RenewTime: &at},
	}
	if err := c.Create(context.Background(), l); err != nil {
		t.Fatal(err)
	}
}

// reconcileAll reconciles every record, as the watch would.
func reconcileAll(t *testing.T, th *Thawer) {
	t.Helper()
	for _, l := range records(t, th.Client) {
		if _, err := th.Reconcile(context.Background(), reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&l)}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTheThawerRunsWhatADeadReplicaOwed(t *testing.T) {
	sts := statefulSet()
	sts.Annotations = map[string]string{policy.PreHook: `["freeze"]`, policy.PostHook: `["thaw"]`}
	exec := &fakeExec{}
	r := runner(t, exec, true, sts, pod("pg-0", "sts", nil), pod("pg-1", "sts", nil), pod("pg-2", "other", nil))
	rec := events.NewFakeRecorder(10)
	th := &Thawer{Runner: r, Client: r.Client, Retry: 15 * time.Second, GiveUp: 10 * time.Minute, Events: rec}
	old := time.Now().Add(-time.Minute)
	// Expired: owed post-hooks run; a pod another controller owns is never exec'd into.
	record(t, r.Client, old, Owing{Namespace: "db", StatefulSet: "pg", Pods: []Owed{{"pg-0", []string{"thaw"}}, {"pg-1", []string{"thaw"}}, {"pg-2", []string{"thaw"}}}})
	// Expired, but the StatefulSet's post-hook is another command now: not run.
	record(t, r.Client, old, Owing{Namespace: "db", StatefulSet: "pg", Pods: []Owed{{"pg-0", []string{"rm", "-rf", "/"}}}})
	// Expired, and the StatefulSet is gone.
	record(t, r.Client, old, Owing{Namespace: "db", StatefulSet: "gone", Pods: []Owed{{"gone-0", []string{"thaw"}}}})
	// Renewed just now: its holder is alive.
	record(t, r.Client, time.Now(), Owing{Namespace: "db", StatefulSet: "pg", Pods: []Owed{{"pg-1", []string{"thaw"}}}})

	reconcileAll(t, th)
	if got := exec.ran(":thaw"); !slices.Equal(got, []string{"pg-0", "pg-1"}) {
		t.Fatalf("post-hooks ran in %v; want pg-0 and pg-1, once each", got)
	}
	if len(exec.calls) != 2 {
		t.Fatalf("calls = %v", exec.calls)
	}
	for range 2 {
		if e := <-rec.Events; !strings.Contains(e, "OwedPostHookRan") || !strings.Contains(e, "snapgate-dead owed") {
			t.Errorf("event %q; want it to say which replica owed the post-hook", e)
		}
	}
	recs := records(t, r.Client)
	if len(recs) != 1 || !slices.Equal(owedPods(t, recs[0]), []string{"pg-1"}) || ptr.Deref(recs[0].Spec.HolderIdentity, "") != "snapgate-dead" ||
		recs[0].Spec.RenewTime.Time.Before(time.Now().Add(-time.Minute)) {
		t.Fatalf("records left = %+v; want only the live holder's", recs)
	}
}

func TestTheThawerRetriesAFailingPostHookThenGivesUp(t *testing.T) {
	sts := statefulSet()
	sts.Annotations = map[string]string{policy.PreHook: `["freeze"]`, policy.PostHook: `["thaw"]`}
	exec := &fakeExec{fail: map[string]error{"pg-0": errors.New("exit 1")}, failPost: true}
	r := runner(t, exec, true, sts, pod("pg-0", "sts", nil))
	clk := clocktesting.NewFakePassiveClock(time.Now())
	th := &Thawer{Runner: r, Client: r.Client, Retry: 15 * time.Second, GiveUp: 10 * time.Minute, Clock: clk}
	record(t, r.Client, time.Now().Add(-time.Minute), Owing{Namespace: "db", StatefulSet: "pg", Pods: []Owed{{"pg-0", []string{"thaw"}}}})
	reconcileAll(t, th)
	reconcileAll(t, th) // held for Retry after the failure: not tried again yet
	clk.SetTime(clk.Now().Add(16 * time.Second))
	reconcileAll(t, th)
	if got := exec.ran(":thaw"); len(got) != 2 || len(records(t, r.Client)) != 1 {
		t.Fatalf("ran %v, records %d; want two tries and the record kept", got, len(records(t, r.Client)))
	}
	th.GiveUp = 30 * time.Second // the record started over a minute ago
	clk.SetTime(clk.Now().Add(16 * time.Second))
	reconcileAll(t, th)
	if n := len(records(t, r.Client)); n != 0 {
		t.Fatalf("records after giving up = %d", n)
	}
}

func TestTheThawerTellsOfAPolicyItCannotRead(t *testing.T) {
	sts := statefulSet()
	sts.Annotations = map[string]string{policy.PreHook: `["freeze"]`, policy.PostHook: `["thaw"]`, policy.On: "tempalte"}
	exec := &fakeExec{}
	r := runner(t, exec, true, sts, pod("pg-0", "sts", nil))
	rec := events.NewFakeRecorder(10)
	th := &Thawer{Runner: r, Client: r.Client, Retry: 15 * time.Second, GiveUp: 10 * time.Minute, Events: rec}
	record(t, r.Client, time.Now().Add(-time.Minute), Owing{Namespace: "db", StatefulSet: "pg", Pods: []Owed{{"pg-0", []string{"thaw"}}}})
	reconcileAll(t, th)
	if e := <-rec.Events; !strings.Contains(e, "PolicyUnreadable") || !strings.Contains(e, `"tempalte"`) {
		t.Errorf("event %q; want a PolicyUnreadable warning naming the bad value", e)
	}
	if got := exec.ran(":thaw"); !slices.Equal(got, []string{"pg-0"}) {
		t.Errorf("post-hooks ran in %v; want the owed one in pg-0 still", got)
	}
}

// TestOwedMetricCountsThePodsOfExpiredRecordsOnly: a live replica's record is
// no debt yet; an expired one's pods are.
func TestOwedMetricCountsThePodsOfExpiredRecordsOnly(t *testing.T) {
	r := runner(t, &fakeExec{}, true)
	now := time.Now()
	record(t, r.Client, now.Add(-time.Minute), Owing{Namespace: "db", StatefulSet: "pg", Pods: []Owed{{"pg-0", []string{"thaw"}}, {"pg-1", []string{"thaw"}}}})
	record(t, r.Client, now, Owing{Namespace: "db", StatefulSet: "pg", Pods: []Owed{{"pg-2", []string{"thaw"}}}})
	if v := testutil.ToFloat64(OwedMetric(r.Client, "snapgate-system", clocktesting.NewFakePassiveClock(now))); v != 2 {
		t.Fatalf("owed = %v, want the 2 pods of the expired record", v)
	}
}
