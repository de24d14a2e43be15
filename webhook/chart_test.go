package webhook

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestChartTemplateHasEveryRouteAndNoPlaceholder: every webhook of the code is
// in the chart's template, with the chart's actions where the code had
// placeholders, and each CEL condition on one line as the code has it.
func TestChartTemplateHasEveryRouteAndNoPlaceholder(t *testing.T) {
	tmpl, err := ChartTemplate()
	if err != nil {
		t.Fatal(err)
	}
	out := string(tmpl)
	m, v := Configurations(ConfigOptions{})
	for _, w := range m.Webhooks {
		if !strings.Contains(out, "name: "+w.Name+"\n") {
			t.Errorf("mutating webhook %s is not in the template", w.Name)
		}
	}
	if !strings.Contains(out, "name: "+v.Webhooks[0].Name+"\n") {
		t.Errorf("validating webhook %s is not in the template", v.Webhooks[0].Name)
	}
	for _, want := range []string{
		`{{- include "snapgate.clientConfig" (dict "root" $ "path" "/guard") | nindent 4 }}`,
		`{{- include "snapgate.clientConfig" (dict "root" $ "path" "/validate") | nindent 4 }}`,
		`{{- include "snapgate.excludedNamespaces" $ | nindent 4 }}`,
		`timeoutSeconds: {{ $.Values.webhook.timeoutSeconds }}`,
		`expression: "` + strings.ReplaceAll(ScaleChanged, `"`, `\"`) + `"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the template lacks %s", want)
		}
	}
	if strings.Contains(out, "placeholder") || strings.Contains(out, "@") {
		t.Errorf("a placeholder or mark is left in the template:\n%s", out)
	}
}

// A namespaced install's webhooks match its namespaces only, on every route,
// besides leaving out kube-system and snapgate's own.
func TestConfigurationsOfANamespacedInstallMatchItsNamespacesOnly(t *testing.T) {
	m, v := Configurations(ConfigOptions{Namespace: "snapgate-system", URL: "https://127.0.0.1:9443", Namespaces: []string{"db", "web"}})
	var selectors []*metav1.LabelSelector
	for _, w := range m.Webhooks {
		selectors = append(selectors, w.NamespaceSelector)
	}
	for _, w := range v.Webhooks {
		selectors = append(selectors, w.NamespaceSelector)
	}
	for i, sel := range selectors {
		var in, notIn []string
		for _, r := range sel.MatchExpressions {
			if r.Key != "kubernetes.io/metadata.name" {
				continue
			}
			switch r.Operator {
			case metav1.LabelSelectorOpIn:
				in = r.Values
			case metav1.LabelSelectorOpNotIn:
				notIn = r.Values
			}
		}
		if strings.Join(in, ",") != "db,web" || strings.Join(notIn, ",") != "kube-system,snapgate-system" {
			t.Errorf("webhook %d: namespaces in %v, not in %v", i, in, notIn)
		}
	}
}
