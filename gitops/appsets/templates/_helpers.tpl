{{/* Helpers of the appsets chart; every name is namespaced by "onecommit-appsets.".
The templates write ApplicationSet parameters (Argo CD's Go templates) as Helm strings. */}}

{{/* Metadata of an ApplicationSet named by the argument's .name (.root: the chart context). */}}
{{- define "onecommit-appsets.metadata" -}}
name: {{ .name }}
namespace: argocd
labels:
  app.kubernetes.io/part-of: onecommit
  app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end -}}

{{/* Go templates with missing keys as errors, as the lint checks them offline. */}}
{{- define "onecommit-appsets.goTemplate" -}}
goTemplate: true
goTemplateOptions: ["missingkey=error"]
{{- end -}}

{{/* Where a generated Application reads this tree: the repository and revision handed down. */}}
{{- define "onecommit-appsets.repo" -}}
repoURL: {{ .Values.repo.url | quote }}
targetRevision: {{ .Values.repo.revision | quote }}
{{- end -}}

{{/* Labels of a generated Application of the env. */}}
{{- define "onecommit-appsets.envLabels" -}}
app.kubernetes.io/part-of: onecommit
onecommit.dev/env: {{ .Values.env | quote }}
{{- end -}}

{{/* Sync policy of a generated Application: Git is the truth; it creates its namespace. */}}
{{- define "onecommit-appsets.syncPolicy" -}}
automated:
  prune: true
  selfHeal: true
syncOptions:
  - CreateNamespace=true
  - ServerSideApply=true
{{- end -}}

{{/* Retries for charts whose first sync can race a dependency still starting. */}}
{{- define "onecommit-appsets.retry" -}}
retry:
  limit: 5
  backoff:
    duration: 10s
    factor: 2
    maxDuration: 3m
{{- end -}}
