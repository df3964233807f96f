{{/* Helpers of the projects chart; every name is namespaced by "onecommit-projects.". */}}

{{/* Metadata of an AppProject named by the argument's .name (.root: the chart context). */}}
{{- define "onecommit-projects.metadata" -}}
name: {{ .name }}
namespace: argocd
labels:
  app.kubernetes.io/part-of: onecommit
  app.kubernetes.io/managed-by: {{ .root.Release.Service }}
finalizers:
  - resources-finalizer.argocd.argoproj.io
{{- end -}}

{{/* An in-cluster destination namespace. */}}
{{- define "onecommit-projects.destination" -}}
- server: https://kubernetes.default.svc
  namespace: {{ . }}
{{- end -}}
