//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/snapgate/snapgate/e2e/framework"
)

// TestChartReadme keeps charts/snapgate/README.md generated from the values'
// comments (`# -- ` starts one); `make chart-golden` writes it anew.
func TestChartReadme(t *testing.T) {
	framework.Parallel(t)
	values, err := os.ReadFile(filepath.Join(chartDir(), "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got := chartReadme(t, string(values))
	path := filepath.Join(chartDir(), "README.md")
	if os.Getenv("UPDATE_GOLDEN") != "" {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil || string(want) != got {
		t.Fatalf("%s is not what values.yaml's comments make (%v); run `make chart-golden`:\n%s", path, err, firstDiff(string(want), got))
	}
}

// valueDoc is one documented value.
type valueDoc struct{ key, def, doc string }

// documentedValues reads `# -- ` comments and the key under each, with its path
// from the indentation.
func documentedValues(t *testing.T, values string) []valueDoc {
	var all map[string]any
	if err := yaml.Unmarshal([]byte(values), &all); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	var out []valueDoc
	var path []string
	var indents []int
	var doc []string
	inDoc := false
	for _, line := range strings.Split(values, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "# -- "):
			doc, inDoc = []string{strings.TrimPrefix(trimmed, "# -- ")}, true
			continue
		case strings.HasPrefix(trimmed, "#") && inDoc:
			doc = append(doc, strings.TrimSpace(strings.TrimPrefix(trimmed, "#")))
			continue
		case trimmed == "" || strings.HasPrefix(trimmed, "#") || strings.HasPrefix(trimmed, "-"):
			inDoc = false
			continue
		}
		indent := len(line) - len(strings.TrimLeft(line, " "))
		key, _, _ := strings.Cut(trimmed, ":")
		for len(indents) > 0 && indents[len(indents)-1] >= indent {
			indents, path = indents[:len(indents)-1], path[:len(path)-1]
		}
		indents, path = append(indents, indent), append(path, key)
		if inDoc {
			def, _ := json.Marshal(lookup(all, path))
			out = append(out, valueDoc{key: strings.Join(path, "."), def: string(def), doc: strings.Join(doc, " ")})
		}
		inDoc = false
	}
	return out
}

func lookup(m map[string]any, path []string) any {
	var v any = m
	for _, p := range path {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[p]
	}
	return v
}

// rbac is what the chart grants, and why snapgate needs each.
var rbac = [][3]string{
	{"statefulsets", "get, list, watch, create, update, patch, delete", "read the changed StatefulSet; watch the annotations that ask for a rollback or retention; record a set; restore template and replicas; create and delete a scheduled verify's scratch copy"},
	{"pods", "get, list, watch", "find the pods to quiesce; wait for a rollback's scale to 0"},
	{"pods/exec", "get, create", "run the quiesce hooks (PostgreSQL CHECKPOINT and your own) and a verify's check in its scratch pods: get for exec over WebSocket, create over SPDY"},
	{"persistentvolumeclaims", "get, list, watch, create, patch, delete", "check the PVCs to snapshot; label those a group snapshot selects; replace them in a rollback; a verify's scratch PVCs"},
	{"persistentvolumes", "get, list, patch", "find a PVC's CSI driver; check that no Available PV would take a restored PVC in place of its snapshot; set a replaced volume to Retain"},
	{"namespaces", "get", "read a namespace's snapgate.io/guard label (scale requests carry none)"},
	{"volumesnapshots", "get, list, watch, create, patch, deletecollection", "take, wait for, record, verify and prune snapshot sets; label a group's members as the set's"},
	{"volumesnapshotcontents", "get", "check that a set's content is bound to it before restoring"},
	{"volumesnapshotclasses", "get, list", "find the default class of a PVC's driver"},
	{"volumegroupsnapshots", "get, create, deletecollection", "cut a replica's (or a StatefulSet's) claims at one instant, and prune those groups"},
	{"volumegroupsnapshotclasses", "list", "find the default group class of a driver"},
	{"events (events.k8s.io)", "create, patch", "record sets taken, skipped, pruned, and rollbacks"},
	{"subjectaccessreviews", "create", "check that whoever set hook annotations may exec into the pods"},
	{"mutating/validatingwebhookconfigurations (builtin mode, its own only)", "get, update", "keep the caBundle current"},
	{"leases (release namespace)", "get, list, watch, create, update, patch, delete", "leader election of the controllers; records of post-hooks in flight, watched by the leader, which runs those a dead replica owed"},
	{"events (core, release namespace)", "create, patch", "leader election's \"became leader\" Event on its Lease"},
	{"secrets (release namespace, builtin mode)", "create; get, list, watch, update on its own", "keep the serving certificate"},
}

func chartReadme(t *testing.T, values string) string {
	var b strings.Builder
	b.WriteString(`# snapgate Helm chart

<!-- Generated from values.yaml by the e2e test TestChartReadme; run ` + "`make chart-golden`" + ` after changing it. -->

snapgate snapshots every replica of a guarded StatefulSet before an upgrade,
scale-down or delete is admitted, and rolls data and pod template back with one
annotation. See the project README for what it does and how to operate it.

## Install

With cert-manager (the default; it issues the webhook's certificate and
injects its CA):

` + "```sh" + `
helm install snapgate charts/snapgate --namespace snapgate-system --create-namespace
` + "```" + `

Without cert-manager, snapgate issues, renews and trusts its own certificate:

` + "```sh" + `
helm install snapgate charts/snapgate --namespace snapgate-system --create-namespace --set certs.mode=builtin
` + "```" + `

Requires Kubernetes 1.30 or later, and the CSI snapshot CRDs and controller.

## Values

| key | default | description |
| --- | --- | --- |
`)
	for _, v := range documentedValues(t, values) {
		fmt.Fprintf(&b, "| `%s` | `%s` | %s |\n", v.key, v.def, strings.ReplaceAll(v.doc, "|", "\\|"))
	}
	b.WriteString(`
## Permissions

The ClusterRole grants only what snapgate uses. With ` + "`rbac.namespaces`" + ` set, the
namespaced rows (StatefulSets, pods, exec, PVCs, snapshots, groups, Events) are
granted by a Role in each of those namespaces instead, and the ClusterRole keeps the
cluster-scoped rest. ` + "`e2e/chart_rbac_test.go`" + ` runs snapgate as the chart's
ServiceAccount through everything it does and fails on any refusal, and, from the
API server's audit log, on any right granted and never used (a few that only rare
paths need are listed there with those paths).

| resource | verbs | why |
| --- | --- | --- |
`)
	for _, r := range rbac {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	b.WriteString(`
## Uninstall

` + "```sh" + `
helm uninstall snapgate --namespace snapgate-system
` + "```" + `

removes the webhook configurations with everything else, so no guarded
StatefulSet stays blocked. Snapshot sets are left in place: they are your data.
`)
	return b.String()
}

// TestChartReadmePermissionsAreTheClusterRoles checks the README's table of
// permissions against the ClusterRole the chart renders: a verb granted and
// not explained, or explained and not granted, fails.
func TestChartReadmePermissionsAreTheClusterRoles(t *testing.T) {
	framework.Parallel(t)
	rendered, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "e2e", "testdata", "chart", "default.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	granted := map[string]string{}
	for _, doc := range strings.Split(string(rendered), "\n---\n") {
		var role struct {
			Kind  string `json:"kind"`
			Rules []struct {
				Resources []string `json:"resources"`
				Verbs     []string `json:"verbs"`
			} `json:"rules"`
		}
		if err := yaml.Unmarshal([]byte(doc), &role); err != nil || role.Kind != "ClusterRole" {
			continue
		}
		for _, r := range role.Rules {
			for _, res := range r.Resources {
				granted[res] = strings.Join(r.Verbs, ", ")
			}
		}
	}
	documented := map[string]bool{}
	for _, row := range rbac {
		res := strings.Fields(row[0])[0]
		if verbs, ok := granted[res]; ok {
			documented[res] = true
			if verbs != row[1] {
				t.Errorf("README says %s: %s; the ClusterRole grants %s", res, row[1], verbs)
			}
		}
	}
	for res, verbs := range granted {
		if !documented[res] && !strings.Contains(res, "webhookconfigurations") {
			t.Errorf("the ClusterRole grants %s: %s, which the README does not explain", res, verbs)
		}
	}
}
