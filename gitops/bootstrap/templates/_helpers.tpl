{{/* Helpers of the bootstrap chart; every name is namespaced by "onecommit-bootstrap.". */}}

{{/* Where an Application reads this tree: the repository and revision handed down. */}}
{{- define "onecommit-bootstrap.repo" -}}
repoURL: {{ .Values.repo.url | quote }}
targetRevision: {{ .Values.repo.revision | quote }}
{{- end -}}

{{/* Helm parameters handing the repository and the env down to a chart of this tree: Argo CD
fills in each Application's own source, so every level passes on what it got. */}}
{{- define "onecommit-bootstrap.handDown" -}}
- name: repo.url
  value: $ARGOCD_APP_SOURCE_REPO_URL
- name: env
  value: {{ .Values.env | quote }}
{{- end -}}

{{/* Metadata of every Application; .root is the chart context, .name and .wave the App's. */}}
{{- define "onecommit-bootstrap.metadata" -}}
name: {{ .name }}
namespace: argocd
labels:
  app.kubernetes.io/part-of: onecommit
  app.kubernetes.io/managed-by: {{ .root.Release.Service }}
annotations:
  argocd.argoproj.io/sync-wave: {{ .wave | quote }}
{{- end -}}

{{/* The in-cluster destination. */}}
{{- define "onecommit-bootstrap.destination" -}}
server: https://kubernetes.default.svc
namespace: {{ . }}
{{- end -}}

{{/* Automated sync: Git is the truth (prune, self-heal). */}}
{{- define "onecommit-bootstrap.automated" -}}
automated:
  prune: true
  selfHeal: true
{{- end -}}
