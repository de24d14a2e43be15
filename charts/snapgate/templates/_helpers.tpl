{{/* The name of every object of the release. */}}
{{- define "snapgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "snapgate.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "snapgate.labels" -}}
{{ include "snapgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "snapgate.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* The secret that holds the serving certificate, in either mode. */}}
{{- define "snapgate.tlsSecret" -}}
{{ include "snapgate.fullname" . }}-tls
{{- end -}}

{{/* Where the API server reaches a handler: the Service, or a URL. */}}
{{- define "snapgate.clientConfig" -}}
{{- if .root.Values.webhook.url -}}
url: {{ printf "%s%s" (trimSuffix "/" .root.Values.webhook.url) .path | quote }}
{{- else -}}
service:
  name: {{ include "snapgate.fullname" .root }}
  namespace: {{ .root.Release.Namespace }}
  path: {{ .path }}
  port: 443
{{- end }}
{{- end -}}

{{/* kube-system and the release namespace are never matched. */}}
{{- define "snapgate.excludedNamespaces" -}}
- key: kubernetes.io/metadata.name
  operator: NotIn
  values:
  - kube-system
  {{- if ne .Release.Namespace "kube-system" }}
  - {{ .Release.Namespace }}
  {{- end }}
{{- with .Values.rbac.namespaces }}
- key: kubernetes.io/metadata.name
  operator: In
  values:
  {{- range . }}
  - {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{- define "snapgate.caInjection" -}}
{{- if eq .Values.certs.mode "cert-manager" -}}
annotations:
  cert-manager.io/inject-ca-from: {{ .Release.Namespace }}/{{ include "snapgate.fullname" . }}
{{- end }}
{{- end -}}
