//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/snapgate/snapgate/e2e/framework"
	"github.com/snapgate/snapgate/webhook"
)

// chartCases are the value combinations the chart is rendered and checked with.
var chartCases = []struct {
	name string
	set  []string
}{
	{"default", nil},
	{"builtin", []string{"certs.mode=builtin"}},
	{"builtin-url-single", []string{"certs.mode=builtin", "webhook.url=https://127.0.0.1:19453", "replicaCount=1", "metrics.enabled=false"}},
	{"cert-manager-url", []string{"webhook.url=https://127.0.0.1:19454"}},
	// Namespaces every cluster has, so that the API server accepts the Roles in them.
	{"namespaced", []string{"rbac.namespaces={default,kube-public}"}},
	{"prometheus-operator", []string{"metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom", "priorityClassName=system-cluster-critical",
		"metrics.prometheusRule.enabled=true", "metrics.prometheusRule.labels.release=prom"}},
}

// The release: its objects are named sg-snapgate, apart from the webhook
// configurations `make run` registers as snapgate.
const (
	chartNamespace = "snapgate-system"
	chartRelease   = "sg"
	chartFullname  = "sg-snapgate"
)

func chartDir() string { return filepath.Join(framework.RepoRoot(), "charts", "snapgate") }

// helmTemplate renders the chart as release sg in snapgate-system.
func helmTemplate(t *testing.T, c *framework.Cluster, set []string) string {
	t.Helper()
	args := []string{"template", chartRelease, chartDir(), "--namespace", chartNamespace}
	for _, s := range set {
		args = append(args, "--set", s)
	}
	r := c.Run(t, "", c.Bin("helm"), args...)
	if r.Err != nil {
		t.Fatalf("helm %v: %v\n%s", args, r.Err, r.Stderr)
	}
	return r.Stdout
}

func TestChartLints(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	for _, tc := range chartCases {
		args := []string{"lint", chartDir(), "--strict"}
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		if r := c.Run(t, "", c.Bin("helm"), args...); r.Err != nil {
			t.Errorf("helm lint %s: %v\n%s%s", tc.name, r.Err, r.Stdout, r.Stderr)
		}
	}
	// A bad value fails the install with a message that names it.
	r := c.Run(t, "", c.Bin("helm"), "template", "snapgate", chartDir(), "--set", "certs.mode=vault", "--set", "webhook.timeoutSeconds=60")
	if r.Err == nil || !strings.Contains(r.Stderr, "at '/certs/mode': value must be one of 'cert-manager', 'builtin'") ||
		!strings.Contains(r.Stderr, "at '/webhook/timeoutSeconds'") {
		t.Errorf("bad values: %v\n%s", r.Err, r.Stderr)
	}
}

// TestChartRendersAsGolden compares each rendering with its golden file under
// e2e/testdata/chart; `make chart-golden` writes them anew after a deliberate
// change.
func TestChartRendersAsGolden(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	update := os.Getenv("UPDATE_GOLDEN") != ""
	for _, tc := range chartCases {
		got := helmTemplate(t, c, tc.set)
		path := filepath.Join(framework.RepoRoot(), "e2e", "testdata", "chart", tc.name+".yaml")
		if update {
			if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v: run `make chart-golden` to write it", err)
		}
		if got != string(want) {
			t.Errorf("%s: the chart renders differently from %s; if the change is meant, run `make chart-golden` and review the diff:\n%s",
				tc.name, path, firstDiff(string(want), got))
		}
	}
}

func firstDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	for i := 0; i < len(al) || i < len(bl); i++ {
		var x, y string
		if i < len(al) {
			x = al[i]
		}
		if i < len(bl) {
			y = bl[i]
		}
		if x != y {
			return "line " + strconv.Itoa(i+1) + ":\n- " + x + "\n+ " + y
		}
	}
	return ""
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// objects splits a rendering into its objects, by kind and name.
func objects(t *testing.T, manifest string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifest), 4096)
	for {
		var raw json.RawMessage
		if err := dec.Decode(&raw); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("decode rendering: %v", err)
		}
		if len(bytes.TrimSpace(raw)) == 0 || string(raw) == "null" {
			continue
		}
		var meta struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		out[meta.Kind+"/"+meta.Metadata.Name] = raw
	}
}

// TestChartWebhooksAreTheCodes checks the chart's webhook configurations
// against webhook.Configurations, which `make run` registers: same routes,
// selectors, conditions, failure policies and timeouts.
func TestChartWebhooksAreTheCodes(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	for _, tc := range chartCases {
		objs := objects(t, helmTemplate(t, c, tc.set))
		o := webhook.ConfigOptions{Name: chartFullname, Namespace: chartNamespace, TimeoutSeconds: 30}
		for _, s := range tc.set {
			if url, ok := strings.CutPrefix(s, "webhook.url="); ok {
				o.URL = url
			}
			if list, ok := strings.CutPrefix(s, "rbac.namespaces="); ok {
				o.Namespaces = strings.Split(strings.Trim(list, "{}"), ",")
			}
		}
		if o.URL == "" {
			port := int32(443)
			o.Service = &admissionregistrationv1.ServiceReference{Namespace: chartNamespace, Name: chartFullname, Port: &port}
		}
		wantM, wantV := webhook.Configurations(o)
		var gotM admissionregistrationv1.MutatingWebhookConfiguration
		var gotV admissionregistrationv1.ValidatingWebhookConfiguration
		if err := json.Unmarshal(objs["MutatingWebhookConfiguration/"+chartFullname], &gotM); err != nil {
			t.Fatalf("%s: mutating configuration: %v", tc.name, err)
		}
		if err := json.Unmarshal(objs["ValidatingWebhookConfiguration/"+chartFullname], &gotV); err != nil {
			t.Fatalf("%s: validating configuration: %v", tc.name, err)
		}
		if !equality.Semantic.DeepEqual(gotM.Webhooks, wantM.Webhooks) {
			g, _ := yaml.Marshal(gotM.Webhooks)
			w, _ := yaml.Marshal(wantM.Webhooks)
			t.Errorf("%s: the chart's mutating webhooks differ from the code's:\n%s", tc.name, firstDiff(string(w), string(g)))
		}
		if !equality.Semantic.DeepEqual(gotV.Webhooks, wantV.Webhooks) {
			g, _ := yaml.Marshal(gotV.Webhooks)
			w, _ := yaml.Marshal(wantV.Webhooks)
			t.Errorf("%s: the chart's validating webhook differs from the code's:\n%s", tc.name, firstDiff(string(w), string(g)))
		}
		inject := gotM.Annotations["cert-manager.io/inject-ca-from"]
		if builtin := strings.Contains(strings.Join(tc.set, ","), "certs.mode=builtin"); builtin != (inject == "") {
			t.Errorf("%s: cert-manager.io/inject-ca-from = %q", tc.name, inject)
		}
	}
}

// TestChartIsAcceptedByTheAPIServer applies each rendering with a server-side
// dry run: the real API server validates every object (the cert-manager CRDs,
// from the cert-manager module, installed first).
func TestChartIsAcceptedByTheAPIServer(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	installCertManagerCRDs(t, c)
	c.Apply(t, "", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+chartNamespace+"\n")
	for _, tc := range chartCases {
		if strings.Contains(strings.Join(tc.set, ","), "serviceMonitor") {
			continue // prometheus-operator's CRDs are not part of the stack
		}
		r := c.Run(t, helmTemplate(t, c, tc.set), c.Bin("kubectl"), "apply", "--dry-run=server", "-f", "-")
		if r.Err != nil {
			t.Errorf("%s: the API server refused the rendering: %v\n%s", tc.name, r.Err, lastLines(r.Stderr, 5))
		}
	}
}

// TestChartAlertsPassPromtool renders the chart's PrometheusRule and has
// Prometheus's own promtool check its rules and run their unit tests
// (e2e/testdata/alerts/alerts_test.yaml): each alert fires on what it names,
// with its labels and text, and stays quiet otherwise.
func TestChartAlertsPassPromtool(t *testing.T) {
	framework.Parallel(t)
	c := framework.Connect(t)
	objs := objects(t, helmTemplate(t, c, []string{"metrics.prometheusRule.enabled=true"}))
	var rule struct {
		Spec json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(objs["PrometheusRule/"+chartFullname], &rule); err != nil || len(rule.Spec) == 0 {
		t.Fatalf("the chart renders no PrometheusRule %s with metrics.prometheusRule.enabled (%v)", chartFullname, err)
	}
	rules, err := yaml.JSONToYAML(rule.Spec)
	if err != nil {
		t.Fatal(err)
	}
	tests, err := os.ReadFile(filepath.Join(framework.RepoRoot(), "e2e", "testdata", "alerts", "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for name, b := range map[string][]byte{"rules.yaml": rules, "alerts_test.yaml": tests} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{{"check", "rules", filepath.Join(dir, "rules.yaml")}, {"test", "rules", filepath.Join(dir, "alerts_test.yaml")}} {
		if r := c.Run(t, "", c.Bin("promtool"), args...); r.Err != nil {
			t.Errorf("promtool %s: %v\n%s%s", strings.Join(args, " "), r.Err, r.Stdout, r.Stderr)
		}
	}
}
