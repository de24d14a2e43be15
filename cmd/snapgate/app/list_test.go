package app

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/snapgate/snapgate/snapshotter"
)

func TestStatefulSetArg(t *testing.T) {
	tests := map[string]struct {
		args []string
		want string
		err  string
	}{
		"sts/NAME":                  {args: []string{"sts/postgres"}, want: "postgres"},
		"statefulset.apps/NAME":     {args: []string{"statefulset.apps/postgres"}, want: "postgres"},
		"a bare name":               {args: []string{"postgres"}, want: "postgres"},
		"another kind is refused":   {args: []string{"deploy/web"}, err: "snapgate guards StatefulSets"},
		"a missing name is refused": {args: []string{"sts/"}, err: "name is missing"},
		"no argument asks for one":  {err: "name one StatefulSet, as sts/NAME"},
		"two arguments ask for one": {args: []string{"sts/a", "sts/b"}, err: "name one StatefulSet"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := statefulSetArg(tc.args)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestListPrintsATableNewestFirst(t *testing.T) {
	now := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	o := &ListOptions{Output: "table", StatefulSet: "postgres", Clock: clocktesting.NewFakePassiveClock(now)}
	sets := []snapshotter.SetInfo{
		{Name: "postgres-3f9a1c2b", Reason: "template", Created: now.Add(-90 * time.Second), RequestedBy: "alice", Snapshots: 3, Ready: 3, Size: resource.MustParse("3Gi"),
			Verified: "passed", VerifiedAt: now.Add(-30 * time.Second)},
		{Name: "postgres-00aa11bb", Reason: "scale-down", Created: now.Add(-26 * time.Hour), Snapshots: 2, Ready: 1, Failed: "x: quota"},
	}
	var out bytes.Buffer
	if err := o.print(&out, "db", sets); err != nil {
		t.Fatal(err)
	}
	want := "SET                 REASON       AGE   READY          VERIFIED         SIZE    BY\n" +
		"postgres-3f9a1c2b   template     90s   3/3            passed 30s ago   3.0Gi   alice\n" +
		"postgres-00aa11bb   scale-down   26h   1/2 (failed)   -                -       \n"
	if out.String() != want {
		t.Fatalf("table =\n%s\nwant\n%s", out.String(), want)
	}
	out.Reset()
	if err := o.print(&out, "db", nil); err != nil || out.String() != "No snapshot sets of statefulset db/postgres.\n" {
		t.Fatalf("empty = %q, %v", out.String(), err)
	}
}

func TestHumanSize(t *testing.T) {
	for in, want := range map[int64]string{0: "-", 512: "512B", 120639934: "115Mi", 3 << 30: "3.0Gi", 1536: "1.5Ki"} {
		if got := humanSize(in); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestListValidatesTheOutput(t *testing.T) {
	o := &ListOptions{Output: "wide"}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), `--output="wide": must be one of table, json, yaml`) {
		t.Fatalf("err = %v", err)
	}
}
