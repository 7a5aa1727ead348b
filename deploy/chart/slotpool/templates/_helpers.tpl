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
{{- $db := .Values.database -}}
{{- if and $db.url $db.existingSecret -}}
{{- fail "database: give either database.url or database.existingSecret, not both" -}}
{{- end -}}
{{- if not (or $db.url $db.existingSecret) -}}
{{- fail "database: set database.existingSecret (a Secret holding the PostgreSQL URL under database.existingSecretKey) or database.url" -}}
{{- end -}}
{{- if hasPrefix "sqlite" $db.url -}}
{{- if gt (int .Values.replicaCount) 1 -}}
{{- fail (printf "database.url: SQLite is one process on one file, so it cannot serve replicaCount: %v (each replica would have a database of its own in its emptyDir); give a PostgreSQL URL (postgresql://user:password@host:5432/db), which all replicas share" .Values.replicaCount) -}}
{{- end -}}
{{- fail "database.url: SQLite would live in the Pod's emptyDir and be lost with the Pod; give a PostgreSQL URL (postgresql://user:password@host:5432/db)" -}}
{{- end -}}
{{- $lease := float64 .Values.leader.leaseSeconds -}}
{{- $renew := float64 .Values.leader.renewSeconds -}}
{{- if not (lt (mulf $renew 2) $lease) -}}
{{- fail (printf "leader.renewSeconds: %v must be below leader.leaseSeconds / 2 (%v), so one missed renewal does not lose the lead" .Values.leader.renewSeconds (divf $lease 2)) -}}
{{- end -}}
{{- $stop := .Values.shutdown -}}
{{- if not (gt (float64 $stop.terminationGracePeriodSeconds) (addf (float64 $stop.preStopSleepSeconds) $lease)) -}}
{{- fail (printf "shutdown.terminationGracePeriodSeconds: %v must be above shutdown.preStopSleepSeconds + leader.leaseSeconds (%v), so a replica is never killed while it still leads" $stop.terminationGracePeriodSeconds (addf (float64 $stop.preStopSleepSeconds) $lease)) -}}
{{- end -}}
{{- $pdb := .Values.podDisruptionBudget -}}
{{- if and $pdb.enabled (gt (int .Values.replicaCount) 1) (not (kindIs "string" $pdb.minAvailable)) -}}
{{- if ge (int $pdb.minAvailable) (int .Values.replicaCount) -}}
{{- fail (printf "podDisruptionBudget.minAvailable: %v with replicaCount: %v would block every node drain; give at most %d" $pdb.minAvailable .Values.replicaCount (sub (int .Values.replicaCount) 1)) -}}
{{- end -}}
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
