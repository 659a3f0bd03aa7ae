{{/*
One tier: a StatefulSet (stable pod names = stable transactional instance ids), its headless
Service (required by the StatefulSet; also how Prometheus finds every replica) and its
PodDisruptionBudget. Called with:
  (dict "root" $ "component" "worker-w1" "tier" "worker" "args" (list ...) "replicas" 1
        "partitions" 12 "image" "models" "resources" {...})
*/}}
{{- define "tribunal.tier" -}}
{{- $root := .root -}}
{{- $name := printf "%s-%s" (include "tribunal.fullname" $root) .component -}}
{{- include "tribunal.checkReplicas" (dict "what" $name "replicas" .replicas "partitions" .partitions) -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ $name }}
  labels:
    {{- include "tribunal.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    tribunal.dev/tier: {{ .tier }}
spec:
  clusterIP: None
  publishNotReadyAddresses: true
  selector:
    {{- include "tribunal.selector" (dict "root" $root "component" .component) | nindent 4 }}
  ports:
    - name: metrics
      port: {{ $root.Values.metrics.port }}
      targetPort: metrics
    - name: health
      port: {{ $root.Values.health.port }}
      targetPort: health
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ $name }}
  labels:
    {{- include "tribunal.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    tribunal.dev/tier: {{ .tier }}
spec:
  serviceName: {{ $name }}
  {{- if not $root.Values.autoscaling.enabled }}
  replicas: {{ .replicas }}
  {{- end }}
  # Replicas of a tier are interchangeable members of one consumer group: start them together.
  # Rolling updates still go one pod at a time and wait for readiness (state restored).
  podManagementPolicy: Parallel
  updateStrategy:
    type: RollingUpdate
  selector:
    matchLabels:
      {{- include "tribunal.selector" (dict "root" $root "component" .component) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "tribunal.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .component }}
        tribunal.dev/tier: {{ .tier }}
      annotations:
        {{- include "tribunal.podAnnotations" $root | nindent 8 }}
    spec:
      automountServiceAccountToken: false
      terminationGracePeriodSeconds: {{ $root.Values.terminationGracePeriodSeconds }}
      {{- with $root.Values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- include "tribunal.podSecurity" $root | nindent 8 }}
      containers:
        - name: {{ .tier }}
          image: {{ include "tribunal.image" (dict "root" $root "kind" .image) }}
          imagePullPolicy: {{ $root.Values.images.pullPolicy }}
          args:
            {{- toYaml .args | nindent 12 }}
          env:
            {{- include "tribunal.env" $root | nindent 12 }}
            {{- with .extraEnv }}
            {{- toYaml . | nindent 12 }}
            {{- end }}
          ports:
            {{- include "tribunal.ports" $root | nindent 12 }}
          {{- include "tribunal.probes" $root | nindent 10 }}
          resources:
            {{- toYaml .resources | nindent 12 }}
          securityContext:
            {{- include "tribunal.containerSecurity" $root | nindent 12 }}
          volumeMounts:
            {{- include "tribunal.volumeMounts" $root | nindent 12 }}
      volumes:
        {{- include "tribunal.volumes" $root | nindent 8 }}
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- if $root.Values.podDisruptionBudget.enabled }}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ $name }}
  labels:
    {{- include "tribunal.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  # One pod at a time: its partitions move to the others, which restore their state first.
  maxUnavailable: {{ $root.Values.podDisruptionBudget.maxUnavailable }}
  selector:
    matchLabels:
      {{- include "tribunal.selector" (dict "root" $root "component" .component) | nindent 6 }}
{{- end }}
{{- end -}}

{{/*
The KEDA ScaledObject of one tier: scale its StatefulSet on the lag of its consumer group on
the topics it reads, never beyond their partitions. Called with
  (dict "root" $ "component" "worker-w1" "tier" "worker" "group" "..." "topics" (list ...)
        "replicas" 1 "maxReplicas" 4 "partitions" 12)
*/}}
{{- define "tribunal.scaledObject" -}}
{{- $root := .root -}}
{{- $name := printf "%s-%s" (include "tribunal.fullname" $root) .component -}}
{{- $tier := .tier -}}
{{- $group := .group -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $name }}
  labels:
    {{- include "tribunal.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: StatefulSet
    name: {{ $name }}
  pollingInterval: {{ $root.Values.autoscaling.pollingInterval }}
  cooldownPeriod: {{ $root.Values.autoscaling.cooldownPeriod }}
  minReplicaCount: {{ .replicas }}
  maxReplicaCount: {{ include "tribunal.maxReplicas" (dict "replicas" .replicas "maxReplicas" .maxReplicas "partitions" .partitions) }}
  triggers:
    {{- range .topics }}
    - type: kafka
      authenticationRef:
        name: {{ include "tribunal.fullname" $root }}-kafka
      metadata:
        bootstrapServers: {{ $root.Values.kafka.bootstrapServers | quote }}
        consumerGroup: {{ $group | quote }}
        topic: {{ . | quote }}
        lagThreshold: {{ index $root.Values.autoscaling.lagThreshold $tier | quote }}
        offsetResetPolicy: earliest
        # Never scale past the partitions that have lag: an extra consumer would sit idle.
        allowIdleConsumers: "false"
        limitToPartitionsWithLag: "true"
    {{- end }}
{{- end -}}
