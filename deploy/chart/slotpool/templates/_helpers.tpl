{{/* The release's full name, at most 63 characters (a DNS label). */}}
{{- define "slotpool.fullname" -}}
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

{{- define "slotpool.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's objects. */}}
{{- define "slotpool.instanceLabels" -}}
app.kubernetes.io/name: {{ include "slotpool.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* What selects the server's Pods. */}}
{{- define "slotpool.selectorLabels" -}}
{{ include "slotpool.instanceLabels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{/* Labels of every object of the chart. */}}
{{- define "slotpool.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "slotpool.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Labels of the server's objects (Deployment, Service, ...). */}}
{{- define "slotpool.serverLabels" -}}
{{ include "slotpool.labels" . }}
app.kubernetes.io/component: server
{{- end -}}

{{- define "slotpool.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "slotpool.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: name the existing ServiceAccount when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret the chart creates for database.url and adminToken.value. */}}
{{- define "slotpool.secretName" -}}
{{- include "slotpool.fullname" . -}}
{{- end -}}

{{/* The URL agents reach the server by. */}}
{{- define "slotpool.publicUrl" -}}
{{- if .Values.server.publicUrl -}}
{{- .Values.server.publicUrl -}}
{{- else -}}
{{- printf "http://%s.%s.svc:%d" (include "slotpool.fullname" .) .Release.Namespace (int .Values.service.port) -}}
{{- end -}}
{{- end -}}

{{/*
The checks the schema cannot make (they span several values), each failing with what to set.
Included by the Deployment, so every install and template runs them.
*/}}
{{- define "slotpool.validate" -}}
{{- if ne (int .Values.replicaCount) 1 -}}
{{- fail (printf "replicaCount: %v is not supported yet: slotpool runs as one replica (its pool controller and per-pool locks live in the server's memory) until leader election exists; set replicaCount: 1" .Values.replicaCount) -}}
{{- end -}}
{{- $db := .Values.database -}}
{{- if and $db.url $db.existingSecret -}}
{{- fail "database: give either database.url or database.existingSecret, not both" -}}
{{- end -}}
{{- if not (or $db.url $db.existingSecret) -}}
{{- fail "database: set database.existingSecret (a Secret holding the PostgreSQL URL under database.existingSecretKey) or database.url" -}}
{{- end -}}
{{- if and .Values.adminToken.value .Values.adminToken.existingSecret -}}
{{- fail "adminToken: give either adminToken.value or adminToken.existingSecret, not both" -}}
{{- end -}}
{{- $seen := dict -}}
{{- range .Values.agents.namespaces -}}
{{- if hasKey $seen . -}}
{{- fail (printf "agents.namespaces: %q is listed twice" .) -}}
{{- end -}}
{{- $_ := set $seen . true -}}
{{- end -}}
{{- end -}}
