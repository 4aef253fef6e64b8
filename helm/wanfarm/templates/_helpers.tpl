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
