package webhook

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"sigs.k8s.io/yaml"
)

// ChartTemplatePath is where in the repository ChartTemplate belongs.
const ChartTemplatePath = "charts/snapgate/templates/webhooks.yaml"

// Placeholders stand in the configurations for what the chart's values and
// helpers decide; ChartTemplate turns each into its template action.
const (
	placeholderNamespace = "snapgate-release-namespace"
	placeholderTimeout   = 29
	clientConfigMark     = "@clientConfig "
	excludedMark         = "@excludedNamespaces"
	timeoutMark          = "@timeoutSeconds"
	expressionMark       = "@expression "
)

// ChartTemplate renders Configurations as the chart's Helm template, so that
// the chart and `snapgate serve` register the same webhooks: routes,
// selectors, CEL conditions and failure policies come from the code, and only
// the name, labels, CA injection, client config, release namespace and the
// guard's timeout from the chart's values and helpers.
func ChartTemplate() ([]byte, error) {
	m, v := Configurations(ConfigOptions{Namespace: placeholderNamespace, URL: "https://placeholder", TimeoutSeconds: placeholderTimeout})
	var b bytes.Buffer
	b.WriteString(`{{- /*
Generated from webhook.Configurations by ` + "`make generate`" + `; do not edit. CI
regenerates it and fails on a difference. A StatefulSet opts in by its own
label or its namespace's; each route comes twice, with disjoint selectors. The
scale subresource carries no labels: outside guarded namespaces its route
fails open.
*/ -}}
`)
	for i, c := range []struct {
		kind     string
		webhooks any
	}{{"MutatingWebhookConfiguration", m.Webhooks}, {"ValidatingWebhookConfiguration", v.Webhooks}} {
		if i > 0 {
			b.WriteString("---\n")
		}
		fmt.Fprintf(&b, `apiVersion: admissionregistration.k8s.io/v1
kind: %s
metadata:
  name: {{ include "snapgate.fullname" . }}
  labels:
    {{- include "snapgate.labels" . | nindent 4 }}
  {{- with include "snapgate.caInjection" . }}{{ . | nindent 2 }}{{ end }}
`, c.kind)
		body, err := webhooksTemplate(c.webhooks)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.kind, err)
		}
		b.Write(body)
	}
	return b.Bytes(), nil
}

// markLine is a YAML line holding a placeholder mark: its indent, its list
// dash and key, and the mark.
var markLine = regexp.MustCompile(`^( *)((?:- )?(?:[A-Za-z]+: )?)'?(@[A-Za-z]+ ?[^']*)'?$`)

// webhooksTemplate marshals the webhooks as YAML, with every placeholder
// replaced by a mark, and then each marked line by its template action.
func webhooksTemplate(webhooks any) ([]byte, error) {
	raw, err := json.Marshal(map[string]any{"webhooks": webhooks})
	if err != nil {
		return nil, err
	}
	var doc struct {
		Webhooks []map[string]any `json:"webhooks"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	var expressions []string
	for _, w := range doc.Webhooks {
		if err := mark(w, &expressions); err != nil {
			return nil, fmt.Errorf("webhook %v: %w", w["name"], err)
		}
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	for _, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		action, err := unmark(line, expressions)
		if err != nil {
			return nil, err
		}
		b.WriteString(action + "\n")
	}
	return b.Bytes(), nil
}

// mark replaces in one webhook what the chart decides by a mark, and each CEL
// expression by a mark of its index in expressions.
func mark(w map[string]any, expressions *[]string) error {
	var cc admissionregistrationv1.WebhookClientConfig
	b, _ := json.Marshal(w["clientConfig"])
	if err := json.Unmarshal(b, &cc); err != nil || cc.URL == nil {
		return fmt.Errorf("no client config URL to replace")
	}
	w["clientConfig"] = clientConfigMark + strings.TrimPrefix(*cc.URL, "https://placeholder")
	if t, ok := w["timeoutSeconds"].(float64); ok && t == placeholderTimeout {
		w["timeoutSeconds"] = timeoutMark
	}
	if err := markExcluded(w["namespaceSelector"]); err != nil {
		return err
	}
	// A CEL expression is written on one line, as JSON quotes it (a YAML
	// double-quoted scalar), not folded: it reads as the code has it.
	conds, _ := w["matchConditions"].([]any)
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok {
			*expressions = append(*expressions, fmt.Sprint(m["expression"]))
			m["expression"] = fmt.Sprintf("%s%d", expressionMark, len(*expressions)-1)
		}
	}
	return nil
}

// unmark turns a marked YAML line into its template action; other lines are
// kept, and one with a placeholder left in is an error.
func unmark(line string, expressions []string) (string, error) {
	mk := markLine.FindStringSubmatch(line)
	if mk == nil {
		if strings.Contains(line, placeholderNamespace) || strings.Contains(line, "'@") || strings.Contains(line, "placeholder") {
			return "", fmt.Errorf("placeholder left in %q", line)
		}
		return line, nil
	}
	indent, key, mark := mk[1], mk[2], mk[3]
	switch {
	case strings.HasPrefix(mark, clientConfigMark):
		path := strings.TrimPrefix(mark, clientConfigMark)
		return fmt.Sprintf("%s%s\n%s  {{- include \"snapgate.clientConfig\" (dict \"root\" $ \"path\" %q) | nindent %d }}",
			indent, strings.TrimSuffix(key, " "), indent, path, len(indent)+2), nil
	case mark == excludedMark && key == "- ":
		return fmt.Sprintf("%s{{- include \"snapgate.excludedNamespaces\" $ | nindent %d }}", indent, len(indent)), nil
	case mark == timeoutMark:
		return fmt.Sprintf("%s%s{{ $.Values.webhook.timeoutSeconds }}", indent, key), nil
	case strings.HasPrefix(mark, expressionMark):
		var i int
		if _, err := fmt.Sscan(strings.TrimPrefix(mark, expressionMark), &i); err != nil || i >= len(expressions) {
			return "", fmt.Errorf("bad expression mark in %q", line)
		}
		q, err := jsonString(expressions[i])
		if err != nil {
			return "", err
		}
		return indent + key + q, nil
	}
	return "", fmt.Errorf("unknown mark in %q", line)
}

// markExcluded replaces, in a namespace selector, the requirement that leaves
// out kube-system and snapgate's own namespace by its mark.
func markExcluded(selector any) error {
	sel, ok := selector.(map[string]any)
	if !ok {
		return fmt.Errorf("no namespace selector")
	}
	exprs, _ := sel["matchExpressions"].([]any)
	for i, e := range exprs {
		if req, ok := e.(map[string]any); ok && req["key"] == "kubernetes.io/metadata.name" {
			if vals, _ := req["values"].([]any); len(vals) != 2 || vals[1] != placeholderNamespace {
				return fmt.Errorf("excluded namespaces %v are not kube-system and the release namespace", vals)
			}
			exprs[i] = excludedMark
			return nil
		}
	}
	return fmt.Errorf("no requirement that excludes namespaces")
}

// jsonString quotes s as JSON does, without HTML escapes: a YAML
// double-quoted scalar that holds s exactly.
func jsonString(s string) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
