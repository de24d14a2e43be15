package webhook

import (
	"strings"
	"testing"
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
