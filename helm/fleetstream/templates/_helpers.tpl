{{- define "fleetstream.fullname" -}}
{{- printf "%s" .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "fleetstream.labels" -}}
app.kubernetes.io/name: fleetstream
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "fleetstream.selector" -}}
app.kubernetes.io/name: fleetstream
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .role }}
{{- end -}}

{{- define "fleetstream.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "fleetstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{ .Values.serviceAccount.name | default (include "fleetstream.fullname" .) }}
{{- else -}}
{{ .Values.serviceAccount.name | default "default" }}
{{- end -}}
{{- end -}}

{{/* The metrics port of a role: base + the offset in runtime/observability.py ROLE_PORT_OFFSETS */}}
{{- define "fleetstream.metricsPort" -}}
{{- $offsets := dict "streams" 0 "sink" 1 "connector-mqtt" 2 "connector-modbus" 3 "connector-opcua" 4 "connector-coap" 5 "connector-http" 6 -}}
{{- add .root.Values.metricsPort (get $offsets .role) -}}
{{- end -}}

{{/* Environment shared by every role. Secrets come from secretKeyRef only. */}}
{{- define "fleetstream.env" -}}
- name: FLEETSTREAM_ENV
  value: {{ .Values.env | quote }}
- name: FLEETSTREAM_HOST
  value: "0.0.0.0"
- name: FLEETSTREAM_DATA_DIR
  value: /var/lib/fleetstream
- name: FLEETSTREAM_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
- name: FLEETSTREAM_METRICS_PORT
  value: {{ .Values.metricsPort | quote }}
- name: FLEETSTREAM_KAFKA_BOOTSTRAP
  value: {{ .Values.kafka.bootstrap | quote }}
- name: FLEETSTREAM_KAFKA_SECURITY_PROTOCOL
  value: {{ .Values.kafka.securityProtocol | quote }}
- name: FLEETSTREAM_KAFKA_SASL_MECHANISM
  value: {{ .Values.kafka.saslMechanism | quote }}
- name: FLEETSTREAM_KAFKA_AWS_REGION
  value: {{ .Values.kafka.awsRegion | quote }}
- name: FLEETSTREAM_KAFKA_REPLICATION_FACTOR
  value: {{ .Values.kafka.replicationFactor | quote }}
- name: FLEETSTREAM_KAFKA_MIN_INSYNC_REPLICAS
  value: {{ .Values.kafka.minInsyncReplicas | quote }}
{{- with .Values.kafka.sasl.existingSecret }}
- name: FLEETSTREAM_KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.kafka.sasl.usernameKey }}
- name: FLEETSTREAM_KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.kafka.sasl.passwordKey }}
{{- end }}
{{- with .Values.kafka.ssl.caFile }}
- name: FLEETSTREAM_KAFKA_SSL_CA_FILE
  value: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.ssl.certFile }}
- name: FLEETSTREAM_KAFKA_SSL_CERT_FILE
  value: {{ . | quote }}
- name: FLEETSTREAM_KAFKA_SSL_KEY_FILE
  value: {{ $.Values.kafka.ssl.keyFile | quote }}
{{- end }}
{{- with .Values.kafka.tenantCredentials.bootstrap }}
- name: FLEETSTREAM_KAFKA_TENANT_BOOTSTRAP
  value: {{ . | quote }}
{{- end }}
{{- with .Values.kafka.tenantCredentials.securityProtocol }}
- name: FLEETSTREAM_KAFKA_TENANT_SECURITY_PROTOCOL
  value: {{ . | quote }}
{{- end }}
- name: FLEETSTREAM_KAFKA_PARTITIONS
  value: {{ .Values.kafka.partitions.telemetry | quote }}
- name: FLEETSTREAM_SCHEMA_REGISTRY_URL
  value: {{ .Values.schemaRegistry.url | quote }}
{{- with .Values.schemaRegistry.auth.existingSecret }}
- name: FLEETSTREAM_SCHEMA_REGISTRY_USER
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.schemaRegistry.auth.userKey }}
- name: FLEETSTREAM_SCHEMA_REGISTRY_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.schemaRegistry.auth.passwordKey }}
{{- end }}
{{- with .Values.schemaRegistry.caFile }}
- name: FLEETSTREAM_SCHEMA_REGISTRY_CA_FILE
  value: {{ . | quote }}
{{- end }}
- name: FLEETSTREAM_MQTT_HOST
  value: {{ .Values.emqx.host | quote }}
- name: FLEETSTREAM_MQTT_TLS_PORT
  value: {{ .Values.emqx.mqttsPort | quote }}
- name: FLEETSTREAM_MQTT_BROKER
  value: emqx
- name: FLEETSTREAM_EMQX_API_URL
  value: {{ .Values.emqx.apiUrl | quote }}
- name: FLEETSTREAM_EMQX_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.emqx.existingSecret }}
      key: {{ .Values.emqx.apiKeyKey }}
- name: FLEETSTREAM_EMQX_API_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.emqx.existingSecret }}
      key: {{ .Values.emqx.apiSecretKey }}
- name: FLEETSTREAM_BROKER_HOOK_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ .Values.emqx.existingSecret }}
      key: {{ .Values.emqx.hookSecretKey }}
- name: FLEETSTREAM_GATEWAY_PORT
  value: {{ .Values.gateway.port | quote }}
- name: FLEETSTREAM_STREAMS_WEB_PORT
  value: {{ .Values.streams.webPort | quote }}
- name: FLEETSTREAM_POSTGRES_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgres.existingSecret }}
      key: {{ .Values.postgres.dsnKey }}
- name: FLEETSTREAM_POSTGRES_APP_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ .Values.postgres.existingSecret }}
      key: {{ .Values.postgres.appPasswordKey }}
- name: FLEETSTREAM_CLICKHOUSE_DSN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.clickhouse.existingSecret }}
      key: {{ .Values.clickhouse.dsnKey }}
{{- with .Values.clickhouse.cluster }}
- name: FLEETSTREAM_CLICKHOUSE_CLUSTER
  value: {{ . | quote }}
{{- end }}
- name: FLEETSTREAM_SECRETS_MASTER_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .Values.platformSecrets.existingSecret }}
      key: {{ .Values.platformSecrets.masterKeyKey }}
{{- end -}}

{{/*
One Deployment for one role. Arguments: dict root role args spec port probePath
*/}}
{{- define "fleetstream.deployment" -}}
{{- $root := .root -}}
{{- $spec := .spec -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "fleetstream.fullname" $root }}-{{ .role }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "fleetstream.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .role }}
spec:
  {{- if not $spec.autoscaling.enabled }}
  replicas: {{ $spec.replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels:
      {{- include "fleetstream.selector" . | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "fleetstream.selector" . | nindent 8 }}
      annotations:
        checksum/config: {{ toJson $root.Values | sha256sum | trunc 16 }}
    spec:
      serviceAccountName: {{ include "fleetstream.serviceAccountName" $root }}
      automountServiceAccountToken: false
      securityContext:
        {{- toYaml $root.Values.podSecurityContext | nindent 8 }}
      {{- if $root.Values.topologySpread }}
      topologySpreadConstraints:
        - maxSkew: 1
          topologyKey: topology.kubernetes.io/zone
          whenUnsatisfiable: ScheduleAnyway
          labelSelector:
            matchLabels:
              {{- include "fleetstream.selector" . | nindent 14 }}
      {{- end }}
      {{- with $root.Values.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $root.Values.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      terminationGracePeriodSeconds: 45
      containers:
        - name: {{ .role }}
          image: {{ include "fleetstream.image" $root }}
          imagePullPolicy: {{ $root.Values.image.pullPolicy }}
          args: {{ toJson .args }}
          env:
            {{- include "fleetstream.env" $root | nindent 12 }}
          ports:
            - name: {{ .portName }}
              containerPort: {{ .port }}
              protocol: TCP
          startupProbe:
            httpGet: {path: {{ .livePath }}, port: {{ .portName }}}
            periodSeconds: 5
            failureThreshold: 24
          livenessProbe:
            httpGet: {path: {{ .livePath }}, port: {{ .portName }}}
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet: {path: {{ .readyPath }}, port: {{ .portName }}}
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          resources:
            {{- toYaml $spec.resources | nindent 12 }}
          securityContext:
            {{- toYaml $root.Values.containerSecurityContext | nindent 12 }}
          volumeMounts:
            - {name: data, mountPath: /var/lib/fleetstream}
            - {name: tmp, mountPath: /tmp}
            - {name: pki, mountPath: /var/lib/fleetstream/pki, readOnly: true}
            {{- if eq .role "gateway" }}
            # token signing keys, the same on every replica (adr/0034); FLEETSTREAM_ENV=prod never makes one
            - {name: jwt, mountPath: /var/lib/fleetstream/keys/jwt, readOnly: true}
            {{- end }}
            {{- if .configMap }}
            - {name: config, mountPath: /etc/fleetstream/connectors, readOnly: true}
            {{- end }}
      volumes:
        - name: data
          emptyDir: {sizeLimit: 1Gi}
        - name: tmp
          emptyDir: {sizeLimit: 256Mi}
        - name: pki
          secret:
            secretName: {{ $root.Values.platformSecrets.pkiSecret }}
            defaultMode: 0440
            # the layout runtime.pki.PlatformPKI reads: ca.crt, services/<identity>.crt|.key
            items:
              - {key: ca.crt, path: ca.crt}
              - {key: connector.crt, path: services/fleetstream-connector.crt}
              - {key: connector.key, path: services/fleetstream-connector.key}
        {{- if eq .role "gateway" }}
        - name: jwt
          secret:
            secretName: {{ $root.Values.platformSecrets.jwtSecret }}
            defaultMode: 0440  # keys named <kid>.pem (adr/0032)
        {{- end }}
        {{- if .configMap }}
        - name: config
          configMap:
            name: {{ .configMap }}
        {{- end }}
{{- end -}}

{{/* Enabled roles as JSON: [{role, spec, portName, port}] — consumed with fromJson by hpa/pdb/service templates */}}
{{- define "fleetstream.roles" -}}
{{- $root := . -}}
{{- $roles := list -}}
{{- if .Values.gateway.enabled -}}
{{- $roles = append $roles (dict "role" "gateway" "spec" .Values.gateway "portName" "http" "port" .Values.gateway.port) -}}
{{- end -}}
{{- if .Values.streams.enabled -}}
{{- $roles = append $roles (dict "role" "streams" "spec" .Values.streams "portName" "metrics" "port" (include "fleetstream.metricsPort" (dict "root" $root "role" "streams") | int)) -}}
{{- end -}}
{{- if .Values.sink.enabled -}}
{{- $roles = append $roles (dict "role" "sink" "spec" .Values.sink "portName" "metrics" "port" (include "fleetstream.metricsPort" (dict "root" $root "role" "sink") | int)) -}}
{{- end -}}
{{- range .Values.connectors -}}
{{- if .enabled -}}
{{- $role := printf "connector-%s" .kind -}}
{{- $roles = append $roles (dict "role" $role "spec" . "portName" "metrics" "port" (include "fleetstream.metricsPort" (dict "root" $root "role" $role) | int)) -}}
{{- end -}}
{{- end -}}
{{- toJson (dict "roles" $roles) -}}
{{- end -}}
