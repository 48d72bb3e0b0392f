{{/* Is the component named by "name" enabled? Names as in DISABLED_COMPONENTS. */}}
{{- define "tessera.enabled" -}}
{{- if has .name .root.Values.disabledComponents -}}{{- else -}}true{{- end -}}
{{- end -}}

{{- define "tessera.partyId" -}}
{{- required "party.id (PARTY_ID) is required" .Values.party.id | toString -}}
{{- end -}}

{{- define "tessera.labels" -}}
app.kubernetes.io/part-of: tessera
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ .Chart.Name }}-{{ .Chart.Version }}
tessera.io/party: {{ include "tessera.partyId" . | quote }}
{{- end -}}

{{/* Selector label of one component: dict "root" $ "component" "flow-server". The name is
     enough: a release has its namespace to itself (tessera.labels add the instance). */}}
{{- define "tessera.selector" -}}
app.kubernetes.io/name: {{ .component }}
{{- end -}}

{{- define "tessera.image" -}}
{{ .repository }}:{{ .tag }}
{{- end -}}

{{- define "tessera.podSecurity" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tessera.containerSecurity" -}}
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{- define "tessera.kafkaBootstrap" -}}
{{- if include "tessera.enabled" (dict "root" . "name" "kafka") -}}
kafka:9092
{{- else -}}
{{ required "kafka.external.host (INTERNAL_MQ_HOST) is required when kafka is disabled" .Values.kafka.external.host }}:{{ .Values.kafka.external.port }}
{{- end -}}
{{- end -}}

{{/* The volumes and mounts every Tessera service has: its env file, keys, a writable /tmp. */}}
{{- define "tessera.serviceVolumes" -}}
- name: party-env
  configMap:
    name: party-env
- name: keys
  secret:
    secretName: party-keys
    defaultMode: 0440
- name: tmp
  emptyDir: {}
{{- end -}}

{{- define "tessera.serviceMounts" -}}
- name: party-env
  mountPath: /etc/tessera/env
  readOnly: true
- name: keys
  mountPath: /etc/tessera/keys
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "tessera.serviceEnv" -}}
- name: TESSERA_ENV_FILE
  value: /etc/tessera/env/party.env
- name: BIND_HOST
  value: {{ .bind | default "0.0.0.0" | quote }}
- name: TESSERA_API_TOKEN
  valueFrom:
    secretKeyRef:
      name: party-secrets
      key: api-token
{{- end -}}

{{/* A generated secret that survives upgrades: the value given, else the one already in the
     cluster's Secret, else a new random one. dict "root" $ "secret" NAME "key" KEY "value" V */}}
{{- define "tessera.keptSecret" -}}
{{- if .value -}}
{{- .value -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .root.Release.Namespace .secret -}}
{{- if and $existing (index ($existing.data | default dict) .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 40 -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* A number of seconds from timing.* as the env file gets it (1000000, not 1e+06), or a failure
     naming the value. dict "key" NAME "value" V */}}
{{- define "tessera.seconds" -}}
{{- $v := .value -}}
{{- $number := or (kindIs "float64" $v) (kindIs "int64" $v) (kindIs "int" $v) -}}
{{- if not (or $number (and (kindIs "string" $v) (regexMatch "^[0-9]+(\\.[0-9]+)?$" (toString $v)))) -}}
{{- fail (printf "timing.%s must be a number of seconds, got %q" .key (toString $v)) -}}
{{- end -}}
{{- $f := float64 $v -}}
{{- if le $f 0.0 -}}
{{- fail (printf "timing.%s must be more than 0 seconds, got %v" .key $v) -}}
{{- end -}}
{{- if eq $f (floor $f) }}{{ int64 $f }}{{ else }}{{ $f }}{{ end -}}
{{- end -}}
