//go:build e2e

package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/snapgate/snapgate/e2e/framework"
	"github.com/snapgate/snapgate/snapshotter/policy"
)

// A namespaced install (rbac.namespaces) guards its namespaces, hooks and
// all, its pods running as the chart's ServiceAccount with Roles there only; a guarded
// StatefulSet elsewhere is never intercepted, and snapgate has no right to
// exec there, nor in kube-system.
func TestANamespacedInstallGuardsOnlyItsNamespaces(t *testing.T) {
	c := framework.Connect(t)
	guarded, other := c.Namespace(t), c.Namespace(t)
	rel := installChart(t, c, "certs.mode=builtin", "rbac.namespaces={"+guarded+"}")
	waitFor(t, 30*time.Second, rel.trusted, "certificate issued into the Secret and its CA in all five webhooks")

	hooks := map[string]string{policy.PreHook: `["sh","-c","touch /data/quiesced; echo hooked >>/data/hooks"]`, policy.PostHook: `["sh","-c","rm /data/quiesced"]`}
	for _, ns := range []string{guarded, other} {
		c.Apply(t, ns, appStatefulSet("db", 1, hooks, nil))
		c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/db", "--timeout=120s")
	}
	r := c.Kubectl(t, "-n", guarded, "set", "resources", "statefulset/db", "-c", "app", "--limits=memory=64Mi")
	if r.Err != nil || !strings.Contains(r.Stderr, "snapgate: took snapshot set db-") {
		t.Fatalf("a guarded change in %s, a namespace of the install: %v\n%s", guarded, r.Err, r.Stderr)
	}
	c.MustKubectl(t, "-n", guarded, "rollout", "status", "statefulset/db", "--timeout=120s")
	if got := c.MustKubectl(t, "-n", guarded, "exec", "db-0", "--", "cat", "/data/hooks"); strings.TrimSpace(got) != "hooked" {
		t.Errorf("the pre-hook in %s ran %q", guarded, got)
	}

	r = c.Kubectl(t, "-n", other, "set", "resources", "statefulset/db", "-c", "app", "--limits=memory=64Mi")
	if r.Err != nil || strings.Contains(r.Stderr, "snapgate") {
		t.Fatalf("a guarded change in %s, outside the install: %v\n%s", other, r.Err, r.Stderr)
	}
	if snaps := c.Snapshots(t, other, "db"); len(snaps) != 0 {
		t.Errorf("%d snapshots in %s, which the install does not cover", len(snaps), other)
	}

	sa := "system:serviceaccount:" + rel.namespace + ":sg-snapgate"
	for _, tc := range []struct{ verb, resource, ns, want string }{
		{"create", "pods --subresource=exec", guarded, "yes"},
		{"create", "pods --subresource=exec", other, "no"},
		{"create", "pods --subresource=exec", "kube-system", "no"},
		{"delete", "persistentvolumeclaims", other, "no"},
		{"get", "persistentvolumes", "", "yes"},
	} {
		args := append([]string{"auth", "can-i", "--as=" + sa, tc.verb}, strings.Fields(tc.resource)...)
		if tc.ns != "" {
			args = append(args, "-n", tc.ns)
		}
		if got := strings.TrimSpace(c.Kubectl(t, args...).Stdout); got != tc.want {
			t.Errorf("kubectl auth can-i %s %s -n %s as snapgate: %s, want %s", tc.verb, tc.resource, tc.ns, got, tc.want)
		}
	}
}
