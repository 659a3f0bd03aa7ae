{{/* Names ------------------------------------------------------------------------------- */}}
{{- define "tribunal.fullname" -}}
{{- if contains "tribunal" .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-tribunal" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tribunal.labels" -}}
app.kubernetes.io/name: tribunal
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "worker-w1") */}}
{{- define "tribunal.selector" -}}
app.kubernetes.io/name: tribunal
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tribunal.image" -}}
{{- $image := index .root.Values.images .kind -}}
{{- printf "%s:%s" $image.repository (default .root.Chart.AppVersion $image.tag) -}}
{{- end -}}

{{/* Consumer groups: the same names consumers/*.py derive (prefix + tribunal-<tier>[-<name>]). */}}
{{- define "tribunal.group" -}}
{{- printf "%stribunal-%s" .root.Values.topics.prefix .tier -}}
{{- end -}}

{{- define "tribunal.topic" -}}
{{- printf "%s%s" .root.Values.topics.prefix .name -}}
{{- end -}}

{{/* Replica bounds. A tier never gets more replicas than partitions to read: `fail` says so. */}}
{{- define "tribunal.checkReplicas" -}}
{{- if gt (int .replicas) (int .partitions) -}}
{{- fail (printf "%s: replicas %d exceed the %d partitions it reads; raise topics partitions first" .what (int .replicas) (int .partitions)) -}}
{{- end -}}
{{- end -}}

{{- define "tribunal.maxReplicas" -}}
{{- $max := int (default .replicas .maxReplicas) -}}
{{- max (int .replicas) (min $max (int .partitions)) -}}
{{- end -}}

{{/* The model server --------------------------------------------------------------------- */}}
{{- define "tribunal.modelServer.name" -}}
{{- printf "%s-model-server" (include "tribunal.fullname" .) -}}
{{- end -}}

{{- define "tribunal.modelServer.url" -}}
{{- printf "http://%s:%d/v1" (include "tribunal.modelServer.name" .) (int .Values.modelServer.port) -}}
{{- end -}}

{{/* The judge's classifier spec: a client of the model server when there is one. */}}
{{- define "tribunal.judgeClassifier" -}}
{{- if .Values.modelServer.enabled -}}
{{- $c := .Values.judge.client -}}
{{- $spec := printf "openai:%s?model=%s&mode=%s&concurrency=%d&timeout_s=%d&retries=%d" (include "tribunal.modelServer.url" .) .Values.modelServer.servedModelName .Values.modelServer.engine (int $c.concurrency) (int $c.timeoutSeconds) (int $c.retries) -}}
{{- if .Values.modelServer.apiKeySecret.name -}}
{{- $spec = printf "%s&api_key_env=MODEL_SERVER_API_KEY" $spec -}}
{{- end -}}
{{- $spec -}}
{{- else -}}
{{- .Values.judge.classifier -}}
{{- end -}}
{{- end -}}

{{/* The TOML every tier reads (tribunal/core/settings.py). Built as a dict, rendered by _toml.tpl. */}}
{{- define "tribunal.config" -}}
{{- $v := .Values -}}
{{- $cfg := deepCopy (default dict $v.config) -}}
{{- $kafka := dict "bootstrap_servers" $v.kafka.bootstrapServers "security_protocol" $v.kafka.securityProtocol "client_id" $v.kafka.clientId -}}
{{- if $v.kafka.sasl.mechanism -}}
{{- $_ := set $kafka "sasl_mechanism" $v.kafka.sasl.mechanism -}}
{{- $_ := set $kafka "sasl_username" $v.kafka.sasl.username -}}
{{- end -}}
{{- if $v.kafka.tls.secretName -}}
{{- $_ := set $kafka "ssl_cafile" (printf "/etc/tribunal/kafka-tls/%s" $v.kafka.tls.caKey) -}}
{{- $_ := set $kafka "ssl_check_hostname" $v.kafka.tls.checkHostname -}}
{{- if $v.kafka.tls.certKey -}}
{{- $_ := set $kafka "ssl_certfile" (printf "/etc/tribunal/kafka-tls/%s" $v.kafka.tls.certKey) -}}
{{- $_ := set $kafka "ssl_keyfile" (printf "/etc/tribunal/kafka-tls/%s" $v.kafka.tls.keyKey) -}}
{{- end -}}
{{- end -}}
{{- $_ := set $cfg "kafka" $kafka -}}
{{- $t := $v.topics -}}
{{- $_ := set $cfg "topics" (dict "prefix" $t.prefix "partitions" (int $t.partitions) "judge_partitions" (int $t.judgePartitions) "labels_partitions" (int $t.labelsPartitions) "replication_factor" (int $t.replicationFactor)) -}}
{{- $names := list -}}
{{- $pipeline := list -}}
{{- range $v.workers -}}
{{- $names = append $names .name -}}
{{- $pipeline = append $pipeline (dict "name" .name "classifier" .classifier "replicas" (int (default 1 .replicas))) -}}
{{- end -}}
{{- $agg := deepCopy (default dict $cfg.aggregator) -}}
{{- $_ := set $agg "workers" $names -}}
{{- $_ := set $cfg "aggregator" $agg -}}
{{- $judge := deepCopy (default dict $cfg.judge) -}}
{{- $_ := set $judge "classifier" (include "tribunal.judgeClassifier" .) -}}
{{- $_ := set $cfg "judge" $judge -}}
{{- $_ := set $cfg "pipeline" (dict "workers" $pipeline "aggregators" (int $v.aggregator.replicas) "judges" (int $v.judge.replicas)) -}}
{{- $_ := set $cfg "home" "/home/tribunal/.tribunal" -}}
{{- $_ := set $cfg "metrics_port" (int $v.metrics.port) -}}
{{- $_ := set $cfg "health_port" (int $v.health.port) -}}
{{- include "tribunal.toml.table" (dict "path" "" "table" $cfg) | trim -}}
{{- end -}}

{{/* Pod pieces shared by every tier ------------------------------------------------------ */}}
{{- define "tribunal.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "tribunal.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
{{- end -}}

{{/* Env of a tier: the stable instance id and secrets, only ever as secretKeyRef. */}}
{{- define "tribunal.env" -}}
- name: TRIBUNAL_CONFIG
  value: /etc/tribunal/tribunal.toml
# The pod name (<statefulset>-<ordinal>) is stable across restarts and unique among replicas:
# the transactional id <group>-<pod name> fences a predecessor at once (docs/cluster.md).
- name: TRIBUNAL_RUNTIME__INSTANCE_ID
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
{{- with .Values.kafka.sasl.passwordSecret }}
{{- if .name }}
- name: TRIBUNAL_KAFKA__SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- with .Values.kafka.tls.keyPasswordSecret }}
{{- if .name }}
- name: TRIBUNAL_KAFKA__SSL_KEYFILE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .name }}
      key: {{ .key }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "tribunal.volumeMounts" -}}
- name: config
  mountPath: /etc/tribunal/tribunal.toml
  subPath: tribunal.toml
  readOnly: true
- name: home
  mountPath: /home/tribunal/.tribunal
- name: tmp
  mountPath: /tmp
{{- if .Values.kafka.tls.secretName }}
- name: kafka-tls
  mountPath: /etc/tribunal/kafka-tls
  readOnly: true
{{- end }}
{{- if .Values.fitted.existingClaim }}
- name: fitted
  mountPath: {{ .Values.fitted.mountPath }}
  {{- with .Values.fitted.subPath }}
  subPath: {{ . }}
  {{- end }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "tribunal.volumes" -}}
- name: config
  configMap:
    name: {{ include "tribunal.fullname" . }}-config
- name: home
  emptyDir: {}
- name: tmp
  emptyDir: {}
{{- if .Values.kafka.tls.secretName }}
- name: kafka-tls
  secret:
    secretName: {{ .Values.kafka.tls.secretName }}
    defaultMode: 0440
{{- end }}
{{- if .Values.fitted.existingClaim }}
- name: fitted
  persistentVolumeClaim:
    claimName: {{ .Values.fitted.existingClaim }}
    readOnly: true
{{- end }}
{{- end -}}

{{/* Probes from tribunal/core/health.py: live while the loop iterates, ready once partitions are
     assigned and their state restored. The startup probe covers model loading. */}}
{{- define "tribunal.probes" -}}
startupProbe:
  httpGet: {path: /livez, port: health}
  periodSeconds: 5
  failureThreshold: 120
livenessProbe:
  httpGet: {path: /livez, port: health}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: health}
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 2
{{- end -}}

{{- define "tribunal.ports" -}}
- name: metrics
  containerPort: {{ .Values.metrics.port }}
- name: health
  containerPort: {{ .Values.health.port }}
{{- end -}}

{{/* A config checksum on the pod template: a changed TOML rolls the tier. */}}
{{- define "tribunal.podAnnotations" -}}
checksum/config: {{ include "tribunal.config" . | sha256sum }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}
