{{/* Names and labels, Helm's usual conventions. */}}
{{- define "sidecar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sidecar.fullname" -}}
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

{{- define "sidecar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sidecar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sidecar.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "sidecar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "sidecar.image" -}}
{{- printf "%s:%s" .Values.sidecar.image.repository (default .Chart.AppVersion .Values.sidecar.image.tag) }}
{{- end }}

{{- define "sidecar.socket" -}}
{{- printf "%s/sidecar.sock" .Values.sidecar.socketDir }}
{{- end }}

{{/* The shutdown budget (README "Deploy"): the agent drains first, then the sidecar
     within --shutdown-timeout + 1 s, all inside one grace period. */}}
{{- define "sidecar.gracePeriod" -}}
{{- add .Values.agent.drainSeconds .Values.sidecar.shutdownTimeoutSeconds 1 .Values.shutdownSlackSeconds }}
{{- end }}

{{/* Fails the render with a one-line reason for a setting combination that cannot work. */}}
{{- define "sidecar.validate" -}}
{{- $k := .Values.kafka }}
{{- $protocols := list "PLAINTEXT" "SSL" "SASL_PLAINTEXT" "SASL_SSL" }}
{{- if not (has $k.securityProtocol $protocols) }}
{{- fail (printf "kafka.securityProtocol must be one of %s, not %q" (join ", " $protocols) $k.securityProtocol) }}
{{- end }}
{{- $sasl := hasPrefix "SASL_" $k.securityProtocol }}
{{- if and $sasl (not $k.sasl.mechanism) }}
{{- fail (printf "kafka.sasl.mechanism is required with kafka.securityProtocol %s" $k.securityProtocol) }}
{{- end }}
{{- if and (not $sasl) $k.sasl.mechanism }}
{{- fail (printf "kafka.sasl.mechanism is set but kafka.securityProtocol %s is not SASL_*" $k.securityProtocol) }}
{{- end }}
{{- if and $sasl (ne $k.sasl.mechanism "OAUTHBEARER") }}
{{- if not (has $k.sasl.mechanism (list "PLAIN" "SCRAM-SHA-256" "SCRAM-SHA-512")) }}
{{- fail (printf "kafka.sasl.mechanism must be PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER, not %q" $k.sasl.mechanism) }}
{{- end }}
{{- if or (not $k.sasl.username) (not $k.sasl.existingSecret) }}
{{- fail (printf "kafka.sasl.mechanism %s needs kafka.sasl.username and kafka.sasl.existingSecret (the password)" $k.sasl.mechanism) }}
{{- end }}
{{- if not (has $k.sasl.passwordFrom (list "file" "env")) }}
{{- fail (printf "kafka.sasl.passwordFrom must be file or env, not %q" $k.sasl.passwordFrom) }}
{{- end }}
{{- end }}
{{- if and (or $k.tls.certKey $k.tls.keyKey) (not (and $k.tls.certKey $k.tls.keyKey)) }}
{{- fail "kafka.tls.certKey and kafka.tls.keyKey go together (mutual TLS needs both)" }}
{{- end }}
{{- if and $k.tls.existingSecret (not (hasSuffix "SSL" $k.securityProtocol)) }}
{{- fail (printf "kafka.tls.existingSecret is set but kafka.securityProtocol %s does not use TLS" $k.securityProtocol) }}
{{- end }}
{{- end }}
