{{/* Peers and rules shared by the NetworkPolicies. */}}
{{- define "kubeloop.np.dnsEgress" -}}
- to:
    - namespaceSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.namespaceSelector | nindent 10 }}
      podSelector:
        matchLabels:
          {{- toYaml .Values.networkPolicy.dns.podSelector | nindent 10 }}
  ports:
    - protocol: UDP
      port: 53
    - protocol: TCP
      port: 53
{{- end }}
{{- define "kubeloop.np.prometheusPeer" -}}
- namespaceSelector:
    matchLabels:
      {{- toYaml .Values.networkPolicy.prometheus.namespaceSelector | nindent 6 }}
  podSelector:
    matchLabels:
      {{- toYaml .Values.networkPolicy.prometheus.podSelector | nindent 6 }}
{{- end }}
{{- define "kubeloop.np.objectStoreEgress" -}}
{{- if .Values.networkPolicy.objectStore.enabled }}
- to:
    {{- range .Values.networkPolicy.objectStore.cidrs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    - protocol: TCP
      port: {{ .Values.networkPolicy.objectStore.port }}
{{- end }}
{{- end }}
{{- define "kubeloop.np.redisEgress" -}}
{{- if .Values.redis.enabled }}
- to:
    - podSelector:
        matchLabels:
          {{- include "kubeloop.componentSelectorLabels" (list . "redis") | nindent 10 }}
  ports:
    - protocol: TCP
      port: 6379
{{- else }}
# An external Redis: its address is only known from the connection string Secret.
- ports:
    - protocol: TCP
      port: 6379
{{- end }}
{{- end }}
