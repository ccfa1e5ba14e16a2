{{- define "agent-runtime.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}{{ .Release.Name | trunc 50 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "agent-runtime.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "agent-runtime.labels" -}}
app.kubernetes.io/part-of: agent-runtime
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
{{- end -}}

{{- define "agent-runtime.namespaceArgs" -}}
{{- range .Values.watchNamespaces }}
- --namespace
- {{ . | quote }}
{{- end }}
{{- end -}}

{{- /* Namespaces whose RuntimePools the operator converges (namespaced Roles only): the watched
namespaces, else poolNamespaces, else the release namespace. A YAML list (use fromYamlArray). */ -}}
{{- define "agent-runtime.poolNamespaces" -}}
{{- if .Values.watchNamespaces -}}
{{ toYaml .Values.watchNamespaces }}
{{- else if .Values.operator.poolNamespaces -}}
{{ toYaml .Values.operator.poolNamespaces }}
{{- else -}}
{{ toYaml (list .Release.Namespace) }}
{{- end -}}
{{- end -}}
