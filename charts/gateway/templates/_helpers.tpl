{{/* Helpers of the gateway chart; every name is namespaced by "onecommit-gateway." so subcharts never collide. */}}

{{/* Chart name, overridable with .Values.nameOverride. */}}
{{- define "onecommit-gateway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: release-chart unless the release already contains the chart name. */}}
{{- define "onecommit-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* chart label: name-version. */}}
{{- define "onecommit-gateway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable across upgrades. */}}
{{- define "onecommit-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "onecommit-gateway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Common labels on every object. */}}
{{- define "onecommit-gateway.labels" -}}
helm.sh/chart: {{ include "onecommit-gateway.chart" . }}
{{ include "onecommit-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: onecommit
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Pinned image reference: repository:tag; "latest" is refused. */}}
{{- define "onecommit-gateway.image" -}}
{{- if eq .Values.image.tag "latest" -}}
{{- fail "image.tag must be an exact version, not latest" -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* Pod securityContext shared by every pod of this chart. */}}
{{- define "onecommit-gateway.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsUser }}
fsGroup: {{ .Values.securityContext.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext: no privilege escalation, no capabilities, read-only root. */}}
{{- define "onecommit-gateway.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .Values.securityContext.readOnlyRootFilesystem }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The container port's name and scheme: HTTPS when the pods serve TLS themselves (tls.secretName). */}}
{{- define "onecommit-gateway.portName" -}}
{{- ternary "https" "http" (not (empty .Values.tls.secretName)) -}}
{{- end -}}

{{- define "onecommit-gateway.scheme" -}}
{{- ternary "HTTPS" "HTTP" (not (empty .Values.tls.secretName)) -}}
{{- end -}}
