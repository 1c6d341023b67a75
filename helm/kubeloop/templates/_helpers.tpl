{{/* Chart name, overridable. */}}
{{- define "kubeloop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-scoped name: <release>-<chart>, or the release name when it holds the chart name. */}}
{{- define "kubeloop.fullname" -}}
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

{{/* Name of one component's objects: <fullname>-<component>. Call with (list $ "gateway"). */}}
{{- define "kubeloop.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "kubeloop.fullname" $root) (index . 1) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kubeloop.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The small fixed set pods are selected by; never changes over a release's life. */}}
{{- define "kubeloop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kubeloop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels on every object. */}}
{{- define "kubeloop.labels" -}}
helm.sh/chart: {{ include "kubeloop.chart" . }}
{{ include "kubeloop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kubeloop
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels of one component. Call with (list $ "gateway"). */}}
{{- define "kubeloop.componentSelectorLabels" -}}
{{ include "kubeloop.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* Labels of one component's objects. Call with (list $ "gateway"). */}}
{{- define "kubeloop.componentLabels" -}}
{{ include "kubeloop.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/* ServiceAccount of one component. Call with (list $ "gateway"). */}}
{{- define "kubeloop.serviceAccountName" -}}
{{- $root := index . 0 }}
{{- if $root.Values.serviceAccount.create }}
{{- include "kubeloop.componentName" . }}
{{- else }}
{{- "default" }}
{{- end }}
{{- end }}

{{/* An image reference from {repository, tag, digest}; the tag defaults to appVersion.
Call with (list $ .Values.image). */}}
{{- define "kubeloop.image" -}}
{{- $root := index . 0 }}
{{- $image := index . 1 }}
{{- $tag := default $root.Chart.AppVersion $image.tag | toString }}
{{- if eq $tag "latest" }}
{{- fail (printf "image %s: the tag `latest` is not allowed; pin a version" $image.repository) }}
{{- end }}
{{- if $image.digest }}
{{- printf "%s:%s@%s" $image.repository $tag $image.digest }}
{{- else }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}
{{- end }}

{{/* Pod Security Standards "restricted", for every pod. */}}
{{- define "kubeloop.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* ... and for every container. */}}
{{- define "kubeloop.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "kubeloop.modelStoreClaim" -}}
{{- default (include "kubeloop.componentName" (list . "model-store")) .Values.persistence.existingClaim }}
{{- end }}

{{/* Paths inside the pods. */}}
{{- define "kubeloop.dataDir" -}}/var/lib/kubeloop{{- end }}
{{- define "kubeloop.bentomlHome" -}}/var/lib/kubeloop/bentoml{{- end }}
{{- define "kubeloop.specPath" -}}/etc/kubeloop/kubeloop.yaml{{- end }}
{{- define "kubeloop.featureStoreYaml" -}}/app/feature_repo/feature_store.cluster.yaml{{- end }}

{{/* URL of a Service of this release, reachable from the release's namespace. */}}
{{- define "kubeloop.serviceUrl" -}}
{{- $root := index . 0 }}
{{- printf "http://%s:%v" (include "kubeloop.componentName" (list $root (index . 1))) (index . 2) }}
{{- end }}

{{/* Name of the Redis Service (the StatefulSet's governing Service). */}}
{{- define "kubeloop.redisHost" -}}
{{- include "kubeloop.componentName" (list . "redis") }}
{{- end }}

{{/* The project spec with the fields the chart owns set for this cluster. */}}
{{- define "kubeloop.spec" -}}
{{- $spec := deepCopy .Values.spec }}
{{- $serve := dict "host" (include "kubeloop.componentName" (list . "gateway")) "port" .Values.gateway.service.port "stable_url" (include "kubeloop.serviceUrl" (list . "stable" 3000)) }}
{{- if .Values.variants.canary.enabled }}
{{- $_ := set $serve "canary_url" (include "kubeloop.serviceUrl" (list . "canary" 3000)) }}
{{- end }}
{{- $gpu := .Values.training.gpu }}
{{- $accelerator := dict "type" $gpu.type "count" $gpu.count "node_selector" $gpu.nodeSelector "tolerations" $gpu.tolerations }}
{{- $owned := dict "workdir" (printf "%s/work" (include "kubeloop.dataDir" .)) "serve" $serve "monitor" (dict "prometheus_url" .Values.prometheus.url) "train" (dict "accelerator" $accelerator) }}
{{- if .Values.feast.enabled }}
{{- $_ := set $owned "features" (dict "store_yaml" (include "kubeloop.featureStoreYaml" .)) }}
{{- end }}
{{- $merged := mergeOverwrite $spec $owned }}
{{- toYaml $merged }}
{{- end }}

{{/* Volumes every kubeloop (BentoML) pod mounts: spec, model store, scratch space. */}}
{{- define "kubeloop.volumes" -}}
- name: spec
  configMap:
    name: {{ include "kubeloop.componentName" (list . "spec") }}
- name: data
  persistentVolumeClaim:
    claimName: {{ include "kubeloop.modelStoreClaim" . }}
# BentoML keeps its Prometheus multiprocess files under $BENTOML_HOME; on the shared volume
# every pod would wipe and mix the others' files, so each pod gets its own.
- name: metrics
  emptyDir:
    sizeLimit: 256Mi
- name: tmp
  emptyDir:
    sizeLimit: 1Gi
{{- end }}

{{- define "kubeloop.volumeMounts" -}}
- name: spec
  mountPath: /etc/kubeloop
  readOnly: true
- name: data
  mountPath: {{ include "kubeloop.dataDir" . }}
- name: metrics
  mountPath: {{ include "kubeloop.bentomlHome" . }}/prometheus_multiproc_dir
- name: tmp
  mountPath: /tmp
{{- end }}

{{/* Environment of every kubeloop (BentoML) container. */}}
{{- define "kubeloop.env" -}}
- name: BENTOML_HOME
  value: {{ include "kubeloop.bentomlHome" . }}
- name: HOME
  value: /tmp
- name: KUBELOOP_SPEC
  value: {{ include "kubeloop.specPath" . }}
- name: BENTOML_DO_NOT_TRACK
  value: "true"
{{- end }}

{{/* The admin token, by reference. */}}
{{- define "kubeloop.adminTokenEnv" -}}
- name: {{ dig "serve" "admin_token_env" "KUBELOOP_ADMIN_TOKEN" .Values.spec }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.gateway.adminToken.existingSecret }}
      key: {{ .Values.gateway.adminToken.key }}
{{- end }}

{{/* Feast's cluster store settings (feature_store.cluster.yaml reads them). */}}
{{- define "kubeloop.feastEnv" -}}
- name: FEAST_REGISTRY_PATH
  value: {{ .Values.feast.registryPath | quote }}
{{- if .Values.redis.enabled }}
{{- if .Values.redis.auth.existingSecret }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.auth.existingSecret }}
      key: {{ .Values.redis.auth.key }}
- name: REDIS_CONNECTION_STRING
  value: {{ printf "%s:6379,password=$(REDIS_PASSWORD)" (include "kubeloop.redisHost" .) | quote }}
{{- else }}
- name: REDIS_CONNECTION_STRING
  value: {{ printf "%s:6379" (include "kubeloop.redisHost" .) | quote }}
{{- end }}
{{- else }}
- name: REDIS_CONNECTION_STRING
  valueFrom:
    secretKeyRef:
      name: {{ required "feast.onlineStore.existingSecret is required when redis.enabled is false" .Values.feast.onlineStore.existingSecret }}
      key: {{ .Values.feast.onlineStore.key }}
{{- end }}
{{- end }}

{{/* Scheduling block shared by the workloads. Call with (list $ .Values.gateway). */}}
{{- define "kubeloop.scheduling" -}}
{{- $root := index . 0 }}
{{- $c := index . 1 }}
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- with $c.nodeSelector }}
nodeSelector:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- with $c.tolerations }}
tolerations:
{{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
