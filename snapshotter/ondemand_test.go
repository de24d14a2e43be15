package snapshotter

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

func TestPlanOnDemandTakesEveryReplicaAnewEachTime(t *testing.T) {
	objs := append(volumes("data-pg-0", "data-pg-1"), class("hostpath", driver, true))
	c := fake.NewClientBuilder().WithScheme(scheme()).WithObjects(objs...).Build()
	e := &Engine{Client: c, Reader: c, Snapshots: c, Changes: NewTracker()}
	at := time.Date(2026, 12, 2, 5, 0, 0, 0, time.UTC)
	d := OnDemand{StatefulSet: testStatefulSet(2, "data"), Policy: policy.Policy{WaitFor: policy.WaitReady},
		By: authenticationv1.UserInfo{Username: "alice"}, At: at}
	first, err := e.PlanOnDemand(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if first.Reason != policy.ReasonManual || plannedPVCs(first) != "data-pg-0@hostpath data-pg-1@hostpath" || first.Change.UserInfo.Username != "alice" {
		t.Fatalf("plan = %s, %s, by %s", first.Reason, plannedPVCs(first), first.Change.UserInfo.Username)
	}
	d.At = at.Add(time.Second)
	if again, err := e.PlanOnDemand(context.Background(), d); err != nil || again.Set == first.Set {
		t.Fatalf("a second on-demand set a second later: %v, set %s; want a new set, not %s", err, again.Set, first.Set)
	}
}

func TestPlanOnDemandOfNothingSaysWhy(t *testing.T) {
	c := fake.NewClientBuilder().WithScheme(scheme()).Build()
	e := &Engine{Client: c, Reader: c, Snapshots: c, Changes: NewTracker()}
	for _, tc := range []struct {
		claims []string
		want   string
	}{
		{nil, "statefulset db/pg has nothing to snapshot: it has no volumeClaimTemplates"},
		{[]string{"data"}, "statefulset db/pg has nothing to snapshot: PVC data-pg-0 of replica 0 does not exist (it holds no data)"},
	} {
		_, err := e.PlanOnDemand(context.Background(), OnDemand{StatefulSet: testStatefulSet(1, tc.claims...), At: time.Now()})
		var pe *PlanError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("claims %v: err %v; want a PlanError saying %q", tc.claims, err, tc.want)
		}
	}
}
