{{/* Chart-wide checks; per-group ones are in "wanfarm.class". Renders nothing, or fails with why. */}}
{{- define "wanfarm.validate" -}}
{{- $a := .Values.autoscaling }}
{{- if not (has (toString $a.upscalingMode) (list "Default" "Aggressive" "Conservative")) }}
{{- fail (printf "autoscaling.upscalingMode %q: use Default, Aggressive or Conservative" (toString $a.upscalingMode)) }}
{{- end }}
{{- if le (int $a.idleTimeoutSeconds) 0 }}
{{- fail "autoscaling.idleTimeoutSeconds must be > 0" }}
{{- end }}
{{- if lt (int $a.scaleUpSeconds) 0 }}
{{- fail "autoscaling.scaleUpSeconds must be >= 0" }}
{{- end }}
{{- if le (int .Values.drainGraceSeconds) 15 }}
{{- fail "drainGraceSeconds must be > 15 (the preStop drain gets all of it but 15 s)" }}
{{- end }}
{{- $names := list }}
{{- $fixed := 0 }}
{{- range .Values.workerGroups }}
{{- if has .name $names }}{{ fail (printf "workerGroups: name %q is given twice" .name) }}{{ end }}
{{- $names = append $names .name }}
{{- $fixed = add $fixed (int (.minReplicas | default 0)) }}
{{- end }}
{{- if and (not $a.enabled) (eq (int $fixed) 0) }}
{{- fail "autoscaling.enabled=false keeps every worker group at minReplicas, and all are 0: no GPU would ever start" }}
{{- end }}
{{- end }}
