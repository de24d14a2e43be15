//go:build e2e

package e2e

import (
	"strings"
	"testing"

	"github.com/snapgate/snapgate/e2e/framework"
)

// gitopsApp is the manifest a GitOps tool holds in git: a guarded busybox
// application whose version is an env var.
func gitopsApp(version string) string {
	return framework.GuardedSet{Name: "app", Replicas: 1, PodSpec: `      containers:
      - name: app
        image: busybox:1.36
        command: ` + framework.SleepingApp + `
        env: [{name: VERSION, value: "` + version + `"}]
        volumeMounts: [{name: data, mountPath: /data}]
`}.YAML()
}

// TestTheRecordSurvivesGitOps: the record snapgate adds to a change is owned
// by no field manager, so applying the manifest again, server-side (as Flux's
// kustomize-controller and Argo CD's argocd-controller do, with and without
// --force-conflicts) or client-side, leaves it there, and the rollback it
// points to still works.
func TestTheRecordSurvivesGitOps(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	ns := c.Namespace(t)
	apply := func(manifest string, args ...string) framework.Result {
		t.Helper()
		r := c.Run(t, manifest, c.Bin("kubectl"), append([]string{"apply", "-n", ns, "-f", "-"}, args...)...)
		if r.Err != nil {
			t.Fatalf("kubectl apply %s: %v\n%s", strings.Join(args, " "), r.Err, r.Stderr)
		}
		return r
	}
	apply(gitopsApp("1"), "--server-side", "--field-manager=kustomize-controller")
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/app", "--timeout=120s")
	c.MustKubectl(t, "-n", ns, "exec", "app-0", "--", "sh", "-c", "echo v1 >/data/version")

	up := apply(gitopsApp("2"), "--server-side", "--field-manager=kustomize-controller")
	set := annotation(t, c, ns, "app", "snapgate.io/last-set")
	if set == "" || !strings.Contains(up.Stderr, "took snapshot set "+set) {
		t.Fatalf("the server-side apply of v2 recorded set %q; warnings: %s", set, up.Stderr)
	}
	for _, again := range [][]string{
		{"--server-side", "--field-manager=kustomize-controller"},
		{"--server-side", "--field-manager=kustomize-controller", "--force-conflicts"},
		{"--server-side", "--field-manager=argocd-controller", "--force-conflicts"},
		{}, // client-side
	} {
		apply(gitopsApp("2"), again...)
		if got := annotation(t, c, ns, "app", "snapgate.io/last-set"); got != set {
			t.Fatalf("after kubectl apply %s of the same manifest, snapgate.io/last-set = %q, want %q", strings.Join(again, " "), got, set)
		}
		if got := annotation(t, c, ns, "app", "snapgate.io/last-snapshots"); !strings.Contains(got, "data-app-0") {
			t.Fatalf("after kubectl apply %s of the same manifest, snapgate.io/last-snapshots = %q", strings.Join(again, " "), got)
		}
	}
	if owners := c.MustKubectl(t, "-n", ns, "get", "statefulset", "app", "--show-managed-fields", "-o", "jsonpath={.metadata.managedFields[*].fieldsV1}"); strings.Contains(owners, "snapgate.io/last-set") {
		t.Fatalf("a field manager owns the record, so its next apply could remove it: %s", owners)
	}

	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/app", "--timeout=120s")
	c.MustKubectl(t, "-n", ns, "exec", "app-0", "--", "sh", "-c", "echo v2 >/data/version")
	rb := c.Run(t, "", c.Bin("snapgate"), "rollback", "statefulset/app", "-n", ns, "--to", set, "--wait")
	if rb.Err != nil || !strings.Contains(rb.Stdout, "Rolled back") {
		t.Fatalf("snapgate rollback --to %s: %v\n%s\n%s", set, rb.Err, rb.Stdout, rb.Stderr)
	}
	c.MustKubectl(t, "-n", ns, "rollout", "status", "statefulset/app", "--timeout=120s")
	if got := strings.TrimSpace(c.MustKubectl(t, "-n", ns, "exec", "app-0", "--", "cat", "/data/version")); got != "v1" {
		t.Fatalf("after the rollback /data/version = %q, want v1", got)
	}
}
