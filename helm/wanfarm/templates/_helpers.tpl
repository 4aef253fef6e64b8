{{- define "wanfarm.labels" -}}
app.kubernetes.io/name: wanfarm
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{- define "wanfarm.image" -}}
{{ printf "%s:%s" .Values.image.repository .Values.image.tag }}
{{- end }}

{{- define "wanfarm.s3Env" -}}
{{- if .Values.s3.bucket }}
- name: AWS_ACCESS_KEY_ID
  valueFrom: {secretKeyRef: {name: {{ .Values.s3.credentials.secretName }}, key: AWS_ACCESS_KEY_ID}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom: {secretKeyRef: {name: {{ .Values.s3.credentials.secretName }}, key: AWS_SECRET_ACCESS_KEY}}
- name: AWS_DEFAULT_REGION
  value: {{ .Values.s3.region | quote }}
{{- end }}
{{- end }}

{{/* The first admin key of apiKeys.keysJson: worker pods drain with it (a drain needs the admin role). */}}
{{- define "wanfarm.drainKey" -}}
{{- $admin := "" }}
{{- range (fromJsonArray .Values.apiKeys.keysJson) }}
{{- if and (not $admin) (kindIs "map" .) (eq (toString (get . "role")) "admin") }}{{ $admin = toString (get . "key") }}{{ end }}
{{- end }}
{{- if not $admin }}
{{- fail "apiKeys.keysJson: no key with role \"admin\" (the worker pods' preStop drain needs one)" }}
{{- end }}
{{- $admin }}
{{- end }}
