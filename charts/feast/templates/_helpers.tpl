{{/* Helpers of the feast chart; every name is namespaced by "onecommit-feast." so subcharts never collide. */}}

{{/* Chart name, overridable with .Values.nameOverride. */}}
{{- define "onecommit-feast.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified app name: release-chart unless the release already contains the chart name. */}}
{{- define "onecommit-feast.fullname" -}}
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
{{- define "onecommit-feast.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels: stable across upgrades. */}}
{{- define "onecommit-feast.selectorLabels" -}}
app.kubernetes.io/name: {{ include "onecommit-feast.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Common labels on every object. */}}
{{- define "onecommit-feast.labels" -}}
helm.sh/chart: {{ include "onecommit-feast.chart" . }}
{{ include "onecommit-feast.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | quote }}
app.kubernetes.io/component: features
app.kubernetes.io/part-of: onecommit
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Pinned image reference: repository:tag; "latest" is refused. */}}
{{- define "onecommit-feast.image" -}}
{{- if eq .Values.image.tag "latest" -}}
{{- fail "image.tag must be an exact version, not latest" -}}
{{- end -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* Pod securityContext shared by every pod of this chart. */}}
{{- define "onecommit-feast.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsUser }}
fsGroup: {{ .Values.securityContext.runAsUser }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container securityContext: no privilege escalation, no capabilities, read-only root. */}}
{{- define "onecommit-feast.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: {{ .Values.securityContext.readOnlyRootFilesystem }}
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Environment of the feast containers: the data dir and the Redis password (SealedSecret). */}}
{{- define "onecommit-feast.env" -}}
- name: HOME
  value: /tmp
- name: ONECOMMIT_FEAST_DATA
  value: {{ .Values.persistence.mountPath | quote }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.passwordSecretName }}
      key: {{ .Values.redis.passwordSecretKey }}
{{- end -}}

{{/* Mounts of the feast containers: the data volume and a writable /tmp. */}}
{{- define "onecommit-feast.volumeMounts" -}}
- name: data
  mountPath: {{ .Values.persistence.mountPath }}
- name: tmp
  mountPath: /tmp
{{- end -}}
