package prune

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/snapgate/snapgate/snapshotter"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

func TestPlanPrune(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	p := &Pruner{Keep: 3, UnadmittedGrace: 10 * time.Minute, Clock: clocktesting.NewFakePassiveClock(now)}
	sts := func(gen int64, ann map[string]string) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "pg", UID: "uid", Generation: gen, Annotations: ann}}
	}
	// set builds sets newest first: name, reason, generation, age.
	set := func(name, reason string, gen int64, age time.Duration) snapshotter.SetInfo {
		return snapshotter.SetInfo{Name: name, Reason: reason, Generation: gen, Created: now.Add(-age)}
	}
	ours := func(sets []snapshotter.SetInfo, others ...string) map[string]string {
		m := map[string]string{}
		for _, s := range sets {
			m[s.Name] = "uid"
		}
		for _, o := range others {
			m[o] = "earlier-uid"
		}
		return m
	}
	history := []snapshotter.SetInfo{
		set("s6", "template", 6, time.Hour), set("s5", "manual", 5, 2*time.Hour), set("s4", "scale-down", 4, 3*time.Hour),
		set("s3", "template", 3, 4*time.Hour), set("s2", "rollback", 2, 5*time.Hour), set("s1", "template", 1, 6*time.Hour),
	}
	tests := map[string]struct {
		sts     *appsv1.StatefulSet
		sets    []snapshotter.SetInfo
		uids    map[string]string
		want    string
		requeue time.Duration
	}{
		"keeps the newest N": {sts: sts(7, nil), sets: history, uids: ours(history), want: "s3 s2 s1"},
		"snapgate.io/keep overrides the default": {
			sts: sts(7, map[string]string{policy.Keep: "5"}), sets: history, uids: ours(history), want: "s1",
		},
		"the last set and a rollback's sets are kept over and above keep": {
			sts:  sts(7, map[string]string{policy.LastSet: "s1", policy.RollbackStatus: policy.RollbackState{Request: "latest", Set: "s3", SafetySet: "s2", Phase: policy.PhaseScalingDown}.String()}),
			sets: history, uids: ours(history), want: "",
		},
		"the latest rollback's safety set outlives the rollback, so that it can be undone": {
			sts:  sts(7, map[string]string{policy.LastSet: "s6", policy.Keep: "1", policy.RollbackStatus: policy.RollbackState{Request: "latest", Set: "s3", SafetySet: "s2", Phase: policy.PhaseSucceeded}.String()}),
			sets: history, uids: ours(history), want: "s5 s4 s3 s1",
		},
		"the last set, which is nearly always the newest, counts toward keep": {
			sts:  sts(4, map[string]string{policy.LastSet: "t3", policy.Keep: "2"}),
			sets: []snapshotter.SetInfo{set("t3", "template", 3, time.Minute), set("t2", "template", 2, time.Hour), set("t1", "template", 1, 2*time.Hour)},
			uids: ours([]snapshotter.SetInfo{{Name: "t3"}, {Name: "t2"}, {Name: "t1"}}), want: "t1",
		},
		"restarts never push out the newest set taken before an upgrade": {
			sts: sts(9, nil),
			sets: []snapshotter.SetInfo{set("r4", "restart", 8, time.Minute), set("r3", "restart", 7, 2*time.Minute), set("r2", "restart", 6, 3*time.Minute),
				set("r1", "restart", 5, 4*time.Minute), set("u2", "template", 4, time.Hour), set("u1", "template", 3, 2*time.Hour)},
			uids: ours([]snapshotter.SetInfo{{Name: "r4"}, {Name: "r3"}, {Name: "r2"}, {Name: "r1"}, {Name: "u2"}, {Name: "u1"}}), want: "r1 u1",
		},
		"a set asked for by rollback-to is kept": {
			sts: sts(7, map[string]string{policy.RollbackTo: "s1"}), sets: history, uids: ours(history), want: "s3 s2",
		},
		"sets of an earlier StatefulSet of the same name are kept, and do not count": {
			sts: sts(7, nil), sets: history, uids: ours(history[:4], "s2", "s1"), want: "s3",
		},
		"a set whose change never landed goes after the grace, and does not count": {
			sts:  sts(6, nil),
			sets: []snapshotter.SetInfo{set("new", "template", 6, 11*time.Minute), set("a", "template", 5, time.Hour), set("b", "template", 4, time.Hour), set("c", "template", 3, time.Hour)},
			uids: ours([]snapshotter.SetInfo{{Name: "new"}, {Name: "a"}, {Name: "b"}, {Name: "c"}}), want: "new",
		},
		"a set whose change may still land is kept until the grace ends": {
			sts:  sts(6, nil),
			sets: []snapshotter.SetInfo{set("new", "scale-down", 6, 4*time.Minute), set("a", "template", 5, time.Hour)},
			uids: ours([]snapshotter.SetInfo{{Name: "new"}, {Name: "a"}}), want: "", requeue: 6 * time.Minute,
		},
		"a delete's set, ready just before the delete is admitted, prunes nothing": {
			sts: sts(7, nil), sets: append([]snapshotter.SetInfo{set("d", "delete", 7, time.Second)}, history[:3]...),
			uids: ours(append([]snapshotter.SetInfo{{Name: "d"}}, history[:3]...)), want: "", requeue: 10*time.Minute - time.Second,
		},
		"nothing is pruned while a set is being taken": {
			sts: sts(7, nil), sets: append([]snapshotter.SetInfo{{Name: "s7", Reason: "template", Generation: 7, Created: now, Snapshots: 2, Ready: 1}}, history...),
			uids: ours(append([]snapshotter.SetInfo{{Name: "s7"}}, history...)), want: "",
		},
		"failed and slow sets push no ready set out; a failed one goes after the grace": {
			sts: sts(7, nil),
			sets: append([]snapshotter.SetInfo{
				{Name: "failed", Reason: "manual", Generation: 7, Created: now.Add(-11 * time.Minute), Snapshots: 2, Failed: "x: quota"},
				{Name: "uploading", Reason: "manual", Generation: 7, Created: now.Add(-11 * time.Minute), Snapshots: 2, Ready: 1},
			}, history...),
			uids: ours(append([]snapshotter.SetInfo{{Name: "failed"}, {Name: "uploading"}}, history...)), want: "failed s3 s2 s1",
		},
		"a set taken on demand at the current generation is not unadmitted": {
			sts: sts(6, nil), sets: []snapshotter.SetInfo{set("m", "manual", 6, time.Hour)}, uids: ours([]snapshotter.SetInfo{{Name: "m"}}), want: "",
		},
		"max-age prunes the older sets, whatever keep says, and comes back when the next one is due": {
			sts: sts(7, map[string]string{policy.Keep: "10", policy.MaxAge: "3h"}), sets: history, uids: ours(history), want: "s3 s2 s1", requeue: time.Hour,
		},
		"max-age never prunes the newest set, nor one a rollback is asked for": {
			sts:  sts(7, map[string]string{policy.MaxAge: "1h", policy.RollbackTo: "s2"}),
			sets: []snapshotter.SetInfo{set("s3", "schedule", 7, 30*time.Hour), set("s2", "schedule", 7, 40*time.Hour), set("s1", "schedule", 7, 50*time.Hour)},
			uids: ours([]snapshotter.SetInfo{{Name: "s3"}, {Name: "s2"}, {Name: "s1"}}), want: "s1",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			sets := slices.Clone(tc.sets)
			for i := range sets {
				sets[i].StatefulSetUID = tc.uids[sets[i].Name]
			}
			prune, requeue := p.PlanPrune(tc.sts, sets)
			var got []string
			for _, d := range prune {
				got = append(got, d.Set)
			}
			if strings.Join(got, " ") != tc.want || requeue != tc.requeue {
				t.Fatalf("prune %v, requeue %s; want %q, %s (%s)", got, requeue, tc.want, tc.requeue, fmt.Sprint(prune))
			}
		})
	}
}

func TestPruneMayChangeWhenAChangeLands(t *testing.T) {
	sts := func(gen int64, ann map[string]string) *metav1.PartialObjectMetadata {
		return &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Generation: gen, Annotations: ann}}
	}
	base := sts(3, map[string]string{policy.LastSet: "db-1", policy.Keep: "2"})
	for name, tc := range map[string]struct {
		updated *metav1.PartialObjectMetadata
		want    bool
	}{
		"the change lands (a new generation, a new last set)": {sts(4, map[string]string{policy.LastSet: "db-2", policy.Keep: "2"}), true},
		"keep changes":                     {sts(3, map[string]string{policy.LastSet: "db-1", policy.Keep: "1"}), true},
		"max-age is set":                   {sts(3, map[string]string{policy.LastSet: "db-1", policy.Keep: "2", policy.MaxAge: "168h"}), true},
		"status or other metadata changes": {sts(3, map[string]string{policy.LastSet: "db-1", policy.Keep: "2"}), false},
	} {
		if got := PruneMayChange(base, tc.updated); got != tc.want {
			t.Errorf("%s: %v, want %v", name, got, tc.want)
		}
	}
}
