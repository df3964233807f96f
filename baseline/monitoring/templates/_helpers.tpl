{{/* Helpers of the monitoring chart, namespaced by "onecommit-monitoring.". */}}

{{/* Common labels on every object. */}}
{{- define "onecommit-monitoring.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: monitoring
app.kubernetes.io/part-of: onecommit
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}
