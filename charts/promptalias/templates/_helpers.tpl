{{/*
Standard helpers, as `helm create` and the External Secrets / cert-manager charts write them.
*/}}

{{/* The chart name (nameOverride wins). */}}
{{- define "promptalias.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name: <release>-<chart>, or the release name when it already contains the chart name. At most 63 characters (DNS label). */}}
{{- define "promptalias.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* A name derived from the full name with a suffix, still at most 63 characters. */}}
{{- define "promptalias.suffixedName" -}}
{{- $suffix := index . 1 }}
{{- printf "%s-%s" (include "promptalias.fullname" (index . 0) | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix }}
{{- end }}

{{/* The namespace of namespaced resources. */}}
{{- define "promptalias.namespace" -}}
{{- default .Release.Namespace .Values.namespaceOverride }}
{{- end }}

{{/* chart label value: <name>-<version>. */}}
{{- define "promptalias.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels every resource carries (without a component). */}}
{{- define "promptalias.commonLabels" -}}
helm.sh/chart: {{ include "promptalias.chart" . }}
app.kubernetes.io/name: {{ include "promptalias.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: promptalias
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels of the operator's own resources. */}}
{{- define "promptalias.labels" -}}
{{ include "promptalias.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/* Labels that select the operator pods (never change them: Deployment selectors are immutable). */}}
{{- define "promptalias.selectorLabels" -}}
app.kubernetes.io/name: {{ include "promptalias.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/* The operator's ServiceAccount name. */}}
{{- define "promptalias.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "promptalias.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The kopf peering name. */}}
{{- define "promptalias.peeringName" -}}
{{- default (include "promptalias.fullname" .) .Values.peering.name }}
{{- end }}

{{/* The image reference: repository@digest or repository:tag (tag defaults to appVersion). */}}
{{- define "promptalias.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Webhook names. */}}
{{- define "promptalias.webhookServiceName" -}}
{{- include "promptalias.suffixedName" (list . "webhook") }}
{{- end }}
{{- define "promptalias.webhookSecretName" -}}
{{- include "promptalias.suffixedName" (list . "webhook-tls") }}
{{- end }}
{{- define "promptalias.webhookCertificateName" -}}
{{- include "promptalias.suffixedName" (list . "webhook") }}
{{- end }}

{{/* The namespaces the operator watches (namespace mode), de-duplicated and sorted. */}}
{{- define "promptalias.watchNamespaces" -}}
{{- .Values.watchNamespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/* The namespaces the operator may read Secrets in (namespace mode): watched + rbac.secretNamespaces. */}}
{{- define "promptalias.secretNamespaces" -}}
{{- concat .Values.watchNamespaces .Values.rbac.secretNamespaces | uniq | sortAlpha | toJson }}
{{- end }}

{{/*
RBAC rules for namespaced resources, shared by the cluster-wide ClusterRole and the per-namespace
Roles so the two modes can never drift apart. Secrets are listed separately (see secretRules).
*/}}
{{- define "promptalias.namespacedRules" -}}
- apiGroups: ["promptalias.io"]
  resources: ["promptaliases", "promptregistries", "promptexperiments"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["promptalias.io"]
  resources: ["promptaliases/status", "promptregistries/status", "promptexperiments/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["promptalias.io"]
  resources: ["promptaliases/finalizers", "promptregistries/finalizers", "promptexperiments/finalizers"]
  verbs: ["update"]
# Projection ConfigMaps: server-side apply (patch; create when missing), a read before applying,
# and a watch (label-selected) that restores deleted or edited ones. Never update or delete: the
# garbage collector removes them through their ownerReference.
- apiGroups: [""]
  resources: ["configmaps"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
# kopf peering: the replicas agree on one active operator through this object.
- apiGroups: ["kopf.dev"]
  resources: ["kopfpeerings"]
  verbs: ["get", "list", "watch", "patch", "create"]
{{- end }}

{{/* Registry credentials: get by name only, never list or watch (that would read every Secret). */}}
{{- define "promptalias.secretRules" -}}
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end }}

{{/* RBAC rules for cluster-scoped resources (both modes). */}}
{{- define "promptalias.clusterScopedRules" -}}
- apiGroups: ["promptalias.io"]
  resources: ["clusterpromptregistries"]
  verbs: ["get", "list", "watch", "patch", "update"]
- apiGroups: ["promptalias.io"]
  resources: ["clusterpromptregistries/status"]
  verbs: ["get", "patch", "update"]
- apiGroups: ["promptalias.io"]
  resources: ["clusterpromptregistries/finalizers"]
  verbs: ["update"]
# ClusterPromptRegistry namespace selectors, and kopf's namespace observer.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
# kopf discovers the served resources through their CRDs.
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["kopf.dev"]
  resources: ["clusterkopfpeerings"]
  verbs: ["get", "list", "watch", "patch", "create"]
{{- end }}
