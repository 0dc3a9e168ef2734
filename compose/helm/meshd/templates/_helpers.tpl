{{- define "meshd.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "meshd.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "meshd.labels" -}}
{{ include "meshd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The port of env.METRICS_ADDR (":9464" → 9464), empty when unset. */}}
{{- define "meshd.metricsPort" -}}
{{- with .Values.env.METRICS_ADDR -}}
{{- regexFind "[0-9]+$" (toString .) -}}
{{- end -}}
{{- end -}}

{{- define "meshd.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{/* Environment shared by the Deployment and the migration Job. */}}
{{- define "meshd.secretEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ required "existingSecret.name is required (a Secret holding DATABASE_URL)" .Values.existingSecret.name }}
      key: {{ .Values.existingSecret.databaseUrlKey }}
{{- if .Values.existingSecret.natsUrlKey }}
- name: NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.name }}
      key: {{ .Values.existingSecret.natsUrlKey }}
{{- end }}
{{- if .Values.existingSecret.encryptionKeyKey }}
- name: BROKER_ENCRYPTION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.name }}
      key: {{ .Values.existingSecret.encryptionKeyKey }}
{{- end }}
{{- if .Values.existingSecret.encryptionKeysPreviousKey }}
- name: BROKER_ENCRYPTION_KEYS_PREVIOUS
  valueFrom:
    secretKeyRef:
      name: {{ .Values.existingSecret.name }}
      key: {{ .Values.existingSecret.encryptionKeysPreviousKey }}
{{- end }}
{{- end -}}

{{- define "meshd.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "meshd.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}
