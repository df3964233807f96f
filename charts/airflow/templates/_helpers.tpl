{{/* Helpers of the airflow chart; every name is namespaced by "onecommit-airflow." so they never collide with the official chart's helpers. */}}

{{/* Chart name, overridable with .Values.nameOverride. */}}
{{- define "onecommit-airflow.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Fully qualified name of our objects: release-chart unless the release already contains the chart name. */}}
{{- define "onecommit-airflow.fullname" -}}
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
{{- define "onecommit-airflow.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels of our objects. */}}
{{- define "onecommit-airflow.selectorLabels" -}}
app.kubernetes.io/name: {{ include "onecommit-airflow.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Common labels on every object of ours. */}}
{{- define "onecommit-airflow.labels" -}}
helm.sh/chart: {{ include "onecommit-airflow.chart" . }}
{{ include "onecommit-airflow.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.sync.image.tag | quote }}
app.kubernetes.io/component: sync
app.kubernetes.io/part-of: onecommit
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Pinned image of the sync Job; "latest" is refused. */}}
{{- define "onecommit-airflow.syncImage" -}}
{{- if eq .Values.sync.image.tag "latest" -}}
{{- fail "sync.image.tag must be an exact version, not latest" -}}
{{- end -}}
{{- printf "%s:%s" .Values.sync.image.repository .Values.sync.image.tag -}}
{{- end -}}

{{/* Airflow's REST API as the official chart names its api-server Service (<release>-api-server). */}}
{{- define "onecommit-airflow.apiUrl" -}}
{{- default (printf "http://%s-api-server:%v" .Release.Name .Values.airflow.ports.apiServer) .Values.sync.airflowUrl -}}
{{- end -}}

{{/* Labels of the trainer's objects (their component is the trainer, not the sync). */}}
{{- define "onecommit-airflow.trainerLabels" -}}
helm.sh/chart: {{ include "onecommit-airflow.chart" . }}
{{ include "onecommit-airflow.trainerSelectorLabels" . }}
app.kubernetes.io/version: {{ .Values.trainer.image.tag | quote }}
app.kubernetes.io/part-of: onecommit
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of the trainer's pods (its NetworkPolicy selects them). */}}
{{- define "onecommit-airflow.trainerSelectorLabels" -}}
{{ include "onecommit-airflow.selectorLabels" . }}
app.kubernetes.io/component: trainer
{{- end -}}
