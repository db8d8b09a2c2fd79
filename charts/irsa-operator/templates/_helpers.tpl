{{- define "irsa-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "irsa-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "irsa-operator.labels" -}}
{{ include "irsa-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "irsa-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "irsa-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "irsa-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The port of an address flag's value, e.g. (index .Values.flags "metrics-addr"). */}}
{{- define "irsa-operator.port" -}}
{{- splitList ":" . | last -}}
{{- end -}}

{{/*
The value of a webhook flag that names something the chart creates, else the chart's own
name for it: (list $ "webhook-service"). The operator and the objects then always agree.
*/}}
{{- define "irsa-operator.webhookName" -}}
{{- $root := index . 0 -}}
{{- $flag := index . 1 -}}
{{- $fullname := include "irsa-operator.fullname" $root -}}
{{- $names := dict
  "webhook-namespace" $root.Release.Namespace
  "webhook-service" (printf "%s-webhook" $fullname)
  "webhook-configuration" (printf "%s-pod-identity" $fullname)
  "validating-webhook-configuration" (printf "%s-validation" $fullname)
  "webhook-ca-secret" (printf "%s-webhook-ca" $fullname) -}}
{{- $value := index $root.Values.flags $flag -}}
{{- if and (eq $flag "webhook-namespace") $value (ne $value $root.Release.Namespace) -}}
{{- fail "flags.webhook-namespace must be empty or the release namespace: the webhook Service and its CA Secret live there" -}}
{{- end -}}
{{- default (index $names $flag) $value -}}
{{- end -}}

{{/* `--name=value` for every flag with a value; lists are comma separated. */}}
{{- define "irsa-operator.args" -}}
{{- if not (index .Values.flags "cluster-name") -}}
{{- fail "flags.cluster-name is required: a name unique among the clusters of the AWS account" -}}
{{- end -}}
{{- if not (or (index .Values.flags "permissions-boundary") .Values.withoutPermissionsBoundary) -}}
{{- fail "flags.permissions-boundary is required: the managed policy every role carries, the most any PodIamRole can grant (see docs/security.md); set withoutPermissionsBoundary=true to run without one" -}}
{{- end -}}
{{- $flags := deepCopy .Values.flags -}}
{{- if (or .Values.flags.webhook (index .Values.flags "validating-webhook")) -}}
{{- range $flag := list "webhook-namespace" "webhook-service" "webhook-configuration" "validating-webhook-configuration" "webhook-ca-secret" -}}
{{- $_ := set $flags $flag (include "irsa-operator.webhookName" (list $ $flag)) -}}
{{- end -}}
{{- end -}}
- run
{{- range $flag, $value := $flags }}
{{- if kindIs "slice" $value }}
{{- if $value }}
- --{{ $flag }}={{ join "," $value }}
{{- end }}
{{- else if not (or (kindIs "invalid" $value) (eq (toString $value) "")) }}
- --{{ $flag }}={{ $value }}
{{- end }}
{{- end }}
{{- end -}}
