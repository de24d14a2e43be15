package snapshotter

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/snapgate/snapgate/snapshotter/policy"
)

func TestSetHashIdentifiesOneChange(t *testing.T) {
	tmpl := &corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "db", Image: "postgres:16"}}}}
	other := tmpl.DeepCopy()
	other.Spec.Containers[0].Image = "postgres:17"

	base := SetHash("uid-1", 100, policy.ReasonTemplate, tmpl, 3, "")
	if again := SetHash("uid-1", 100, policy.ReasonTemplate, tmpl.DeepCopy(), 3, ""); again != base {
		t.Fatalf("the same change hashed %s then %s: a retry would take a new set", base, again)
	}
	for name, h := range map[string]string{
		"another StatefulSet":       SetHash("uid-2", 100, policy.ReasonTemplate, tmpl, 3, ""),
		"a later spec (generation)": SetHash("uid-1", 101, policy.ReasonTemplate, tmpl, 3, ""),
		"another template":          SetHash("uid-1", 100, policy.ReasonTemplate, other, 3, ""),
		"another replica count":     SetHash("uid-1", 100, policy.ReasonTemplate, tmpl, 2, ""),
		"another kind of change":    SetHash("uid-1", 100, policy.ReasonDelete, tmpl, 3, ""),
		"no template (scale-down)":  SetHash("uid-1", 100, policy.ReasonTemplate, nil, 3, ""),
	} {
		if h == base {
			t.Errorf("%s hashed like the base change: it would reuse the wrong set", name)
		}
	}
	if len(base) != 8 {
		t.Fatalf("hash %q: want 8 hex characters", base)
	}
}

func TestNamesFitKubernetesLimits(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := map[string]struct {
		got   string
		check func(string) []string
		want  string
	}{
		"a short set name is kept whole":      {SetName("postgres", "3f9a1c2b"), validation.IsValidLabelValue, "postgres-3f9a1c2b"},
		"a long set name fits a label value":  {SetName(long, "3f9a1c2b"), validation.IsValidLabelValue, strings.Repeat("a", 54) + "-3f9a1c2b"},
		"a cut never ends in a dash":          {SetName(strings.Repeat("a", 53)+"-b", "3f9a1c2b"), validation.IsValidLabelValue, strings.Repeat("a", 53) + "-3f9a1c2b"},
		"a snapshot name mirrors its PVC":     {SnapshotName("data-postgres-0", "3f9a1c2b"), validation.IsDNS1123Subdomain, "data-postgres-0-3f9a1c2b"},
		"a long snapshot name fits 253 chars": {SnapshotName(long, "3f9a1c2b"), validation.IsDNS1123Subdomain, strings.Repeat("a", 244) + "-3f9a1c2b"},
		"a short label value is kept whole":   {LabelValue("postgres"), validation.IsValidLabelValue, "postgres"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got %q, want %q", tc.got, tc.want)
			}
			if msgs := tc.check(tc.got); len(msgs) > 0 {
				t.Errorf("%q is not a valid name: %v", tc.got, msgs)
			}
		})
	}
	a, b := LabelValue(long), LabelValue(long+"b")
	if len(a) != 63 || a == b || len(validation.IsValidLabelValue(a)) > 0 {
		t.Errorf("long label values %q and %q: want 63 chars, valid, distinct", a, b)
	}
}

func TestClaimName(t *testing.T) {
	if got := ClaimName("data", "postgres", 2); got != "data-postgres-2" {
		t.Fatalf("got %q", got)
	}
}
