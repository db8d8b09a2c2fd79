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

{{/* The port of flags.metrics-addr. */}}
{{- define "irsa-operator.metricsPort" -}}
{{- index .Values.flags "metrics-addr" | splitList ":" | last -}}
{{- end -}}

{{/* `--name=value` for every flag with a value; lists are comma separated. */}}
{{- define "irsa-operator.args" -}}
{{- if not (index .Values.flags "cluster-name") -}}
{{- fail "flags.cluster-name is required: a name unique among the clusters of the AWS account" -}}
{{- end -}}
- run
{{- range $flag, $value := .Values.flags }}
{{- if kindIs "slice" $value }}
{{- if $value }}
- --{{ $flag }}={{ join "," $value }}
{{- end }}
{{- else if not (or (kindIs "invalid" $value) (eq (toString $value) "")) }}
- --{{ $flag }}={{ $value }}
{{- end }}
{{- end }}
{{- end -}}
