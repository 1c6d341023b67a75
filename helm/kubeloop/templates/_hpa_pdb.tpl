{{/* HorizontalPodAutoscaler and PodDisruptionBudget of one Deployment, each behind its flag.
Call with (list $ "gateway" .Values.gateway); renders nothing when both are off. */}}
{{- define "kubeloop.hpaPdb" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $c := index . 2 }}
{{- $name := include "kubeloop.componentName" (list $root $component) }}
{{- if $c.autoscaling.enabled }}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ $name }}
  labels:
    {{- include "kubeloop.componentLabels" (list $root $component) | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $name }}
  minReplicas: {{ $c.autoscaling.minReplicas }}
  maxReplicas: {{ $c.autoscaling.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $c.autoscaling.targetCPUUtilizationPercentage }}
{{- end }}
{{- if $c.pdb.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "kubeloop.componentLabels" (list $root $component) | nindent 4 }}
spec:
  maxUnavailable: {{ $c.pdb.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "kubeloop.componentSelectorLabels" (list $root $component) | nindent 6 }}
{{- end }}
{{- end }}
