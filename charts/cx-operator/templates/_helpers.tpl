{{/* Names and labels shared by every template. */}}

{{/* The chart name, or nameOverride. */}}
{{- define "cx-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every resource name: fullnameOverride, else the release name when it
contains the chart name (`cx-operator` gives the operator's default names), else
`<release>-<chart>`. At most 45 characters so that suffixes such as
`-webhook-tls` keep names within 63.
*/}}
{{- define "cx-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "cx-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels selecting the operator pods. */}}
{{- define "cx-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cx-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "cx-operator.labels" -}}
helm.sh/chart: {{ include "cx-operator.chart" . }}
{{ include "cx-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cx-operator
{{- end }}

{{- define "cx-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "cx-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The webhook Service, ValidatingWebhookConfiguration, Secret and Certificate. */}}
{{- define "cx-operator.webhookService" -}}
{{- printf "%s-webhook" (include "cx-operator.fullname" .) }}
{{- end }}
{{- define "cx-operator.webhookConfiguration" -}}
{{- include "cx-operator.fullname" . }}
{{- end }}
{{- define "cx-operator.webhookSecret" -}}
{{- default (printf "%s-webhook-tls" (include "cx-operator.fullname" .)) .Values.webhook.certificate.secretName }}
{{- end }}
{{- define "cx-operator.webhookCertificate" -}}
{{- printf "%s-webhook" (include "cx-operator.fullname" .) }}
{{- end }}

{{/*
The operator configuration file: .Values.config with the keys the chart owns set to
what the chart installs (the webhook's Service, configuration and Secret).
*/}}
{{- define "cx-operator.config" -}}
{{- $config := deepCopy .Values.config }}
{{- $webhook := default dict (get $config "webhook") }}
{{- $certificate := default dict (get $webhook "certificate") }}
{{- $_ := set $certificate "mode" .Values.webhook.certificate.mode }}
{{- $_ = set $certificate "secretName" (include "cx-operator.webhookSecret" .) }}
{{- $_ = set $webhook "enabled" .Values.webhook.enabled }}
{{- $_ = set $webhook "port" .Values.webhook.port }}
{{- $_ = set $webhook "serviceName" (include "cx-operator.webhookService" .) }}
{{- $_ = set $webhook "configurationName" (include "cx-operator.webhookConfiguration" .) }}
{{- $_ = set $webhook "certificate" $certificate }}
{{- $_ = set $config "webhook" $webhook }}
{{- toYaml $config }}
{{- end }}

{{/*
The documents of a file under files/ (a multi-document YAML file), parsed; used for
the RBAC rules kept byte-identical with config/rbac/.
*/}}
{{- define "cx-operator.rbacDocuments" -}}
{{- $docs := list }}
{{- range $text := regexSplit "(?m)^---[ \t]*$" (.root.Files.Get .file) -1 }}
{{- $doc := fromYaml $text }}
{{- if hasKey $doc "Error" }}
{{- fail (printf "%s: %s" $.file $doc.Error) }}
{{- end }}
{{- if $doc.kind }}
{{- $docs = append $docs $doc }}
{{- end }}
{{- end }}
{{- toJson $docs }}
{{- end }}

{{/*
The chart's name for an object of config/rbac/: `cx-operator` (the repository's
default prefix) becomes the full name of the release; other names get it prefixed.
*/}}
{{- define "cx-operator.rbacName" -}}
{{- $full := include "cx-operator.fullname" .root }}
{{- if eq .name "cx-operator" }}
{{- $full }}
{{- else if hasPrefix "cx-operator-" .name }}
{{- printf "%s-%s" $full (trimPrefix "cx-operator-" .name) | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" $full .name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
