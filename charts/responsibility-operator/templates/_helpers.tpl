{{/*
Names and labels. Object names follow config/default: "<fullname>-<name in config/>", so a
release named responsibility-operator creates the same names as `make deploy`.
*/}}
{{- define "ro.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ro.fullname" -}}
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

{{- define "ro.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ro.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
control-plane: controller-manager
{{- end }}

{{- define "ro.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "ro.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "ro.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (printf "%s-controller-manager" (include "ro.fullname" .)) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "ro.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default (printf "v%s" .Chart.AppVersion) .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
ro.certSource resolves webhook.certificate.source: "auto" is cert-manager when the API server
serves its Certificate kind (helm template: pass --api-versions cert-manager.io/v1/Certificate),
else the chart's own certificate.
*/}}
{{- define "ro.certSource" -}}
{{- $s := .Values.webhook.certificate.source }}
{{- if eq $s "auto" }}
{{- if .Capabilities.APIVersions.Has "cert-manager.io/v1/Certificate" }}certManager{{ else }}chart{{ end }}
{{- else }}
{{- $s }}
{{- end }}
{{- end }}

{{- define "ro.webhookService" -}}
{{- printf "%s-webhook-service" (include "ro.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "ro.webhookSecret" -}}
{{- printf "%s-webhook-server-cert" (include "ro.fullname" .) }}
{{- end }}

{{- /* Service names are DNS labels: at most 63 characters. */}}
{{- define "ro.metricsService" -}}
{{- printf "%s-controller-manager-metrics-service" (include "ro.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- /*
ro.webhook renders one webhook of a webhook configuration from its copy in
files/generated/webhooks.yaml (dict: root, hook, service, caBundle, failurePolicy): called
through the chart's Service on port 443, with the CA bundle when the chart made the
certificate, the values' timeout and the given failure policy. A webhook for ResponsibilityModels
skips the catalog's models (label responsibility.io/catalog; templates/webhook.yaml says why).
*/}}
{{- define "ro.webhook" -}}
{{- $root := .root }}
{{- $clientConfig := dict "service" (dict "name" .service "namespace" $root.Release.Namespace "path" .hook.clientConfig.service.path "port" 443) }}
{{- if .caBundle }}
{{- $_ := set $clientConfig "caBundle" .caBundle }}
{{- end }}
{{- $webhook := dict "clientConfig" $clientConfig "failurePolicy" .failurePolicy "timeoutSeconds" $root.Values.webhook.timeoutSeconds }}
{{- $models := false }}
{{- range .hook.rules }}
{{- if has "responsibilitymodels" .resources }}
{{- $models = true }}
{{- end }}
{{- end }}
{{- if $models }}
{{- $_ := set $webhook "objectSelector" (dict "matchExpressions" (list (dict "key" "responsibility.io/catalog" "operator" "DoesNotExist"))) }}
{{- end -}}
- {{ toYaml (merge $webhook (omit .hook "clientConfig" "failurePolicy" "timeoutSeconds" "objectSelector")) | indent 2 | trim }}
{{- end }}
