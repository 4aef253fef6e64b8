{{/*
GPU classes: one per worker group (scheduler.demand.GpuClass). "wanfarm.class" takes
(dict "group" <workerGroups item> "Values" .Values) and returns the group as JSON with its defaults
filled in, failing with a message on a value the farm or KubeRay would refuse.
*/}}
{{- define "wanfarm.class" -}}
{{- $g := .group }}
{{- $name := toString ($g.name | default "") }}
{{- if not (regexMatch "^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$" $name) }}
{{- fail (printf "workerGroups: name %q: use 1-32 lower-case letters, digits and '-' (a GPU class name)" $name) }}
{{- end }}
{{- $gpus := 1 }}
{{- if hasKey $g "gpusPerNode" }}{{ $gpus = int $g.gpusPerNode }}{{ end }}
{{- $min := int ($g.minReplicas | default 0) }}
{{- $max := int ($g.maxReplicas | default 0) }}
{{- $idle := 300 }}
{{- if hasKey $g "agentIdleTimeoutSeconds" }}{{ $idle = int $g.agentIdleTimeoutSeconds }}{{ end }}
{{- $hot := max $idle 900 }}
{{- if hasKey $g "agentHotIdleTimeoutSeconds" }}{{ $hot = int $g.agentHotIdleTimeoutSeconds }}{{ end }}
{{- if lt $gpus 1 }}
{{- fail (printf "workerGroups %s: gpusPerNode must be 1 or more" $name) }}
{{- end }}
{{- if or (lt $min 0) (lt $max $min) (lt $max 1) }}
{{- fail (printf "workerGroups %s: need 0 <= minReplicas <= maxReplicas and maxReplicas >= 1 (got %d and %d)" $name $min $max) }}
{{- end }}
{{- if le $idle 0 }}
{{- fail (printf "workerGroups %s: agentIdleTimeoutSeconds must be > 0" $name) }}
{{- end }}
{{- if lt $hot $idle }}
{{- fail (printf "workerGroups %s: agentHotIdleTimeoutSeconds (%d) must be >= agentIdleTimeoutSeconds (%d)" $name $hot $idle) }}
{{- end }}
{{- if and .Values.autoscaling.enabled (not $g.gpu) }}
{{- fail (printf "workerGroups %s: set gpu, the GPU-table name of its cards (e.g. \"RTX 4090\")" $name) }}
{{- end }}
{{- dict "name" $name "gpu" (toString ($g.gpu | default "")) "gpusPerNode" $gpus "minReplicas" $min "maxReplicas" $max "ramGb" (include "wanfarm.ramGb" $g) "idle" $idle "hot" $hot | toJson }}
{{- end }}

{{/* The Ray resource a class's nodes advertise, one unit per GPU (scheduler.demand.class_resource). */}}
{{- define "wanfarm.classResource" -}}
wanfarm_class_{{ replace "-" "_" . }}
{{- end }}

{{/* A class's node RAM in GiB: ramGb, else its worker container's memory limit when given in Gi. */}}
{{- define "wanfarm.ramGb" -}}
{{- if .ramGb }}
{{- if le (float64 .ramGb) 0.0 }}{{ fail (printf "workerGroups %s: ramGb must be > 0" .name) }}{{ end }}
{{- float64 .ramGb }}
{{- else }}
{{- $memory := toString (dig "limits" "memory" "" (.resources | default dict)) }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?Gi$" $memory) }}
{{- fail (printf "workerGroups %s: set ramGb (resources.limits.memory %q is not a number of Gi)" .name $memory) }}
{{- end }}
{{- trimSuffix "Gi" $memory | float64 }}
{{- end }}
{{- end }}

{{/* The controller's classes file (wanfarm up --gpu-classes), classes in workerGroups' order. */}}
{{- define "wanfarm.gpuClassesJson" -}}
{{- $classes := list }}
{{- range .Values.workerGroups }}
{{- $c := include "wanfarm.class" (dict "group" . "Values" $.Values) | fromJson }}
{{- $gpus := int $c.gpusPerNode }}
{{- $classes = append $classes (dict "name" $c.name "gpu" $c.gpu "max_gpus" (mul (int $c.maxReplicas) $gpus) "ram_gb" (float64 $c.ramGb) "gpus_per_node" $gpus "idle_release_s" (int $c.idle) "hot_release_s" (int $c.hot)) }}
{{- end }}
{{- dict "classes" $classes "scale_up_s" (int .Values.autoscaling.scaleUpSeconds) | toPrettyJson }}
{{- end }}
