{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "custody.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: the release name, with the chart's unless it holds it. */}}
{{- define "custody.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "custody.selectorLabels" -}}
app.kubernetes.io/name: {{ include "custody.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: collector
{{- end -}}

{{- define "custody.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "custody.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "custody.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "custody.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name: the existing ServiceAccount to run as (serviceAccount.create is false)" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "custody.image" -}}
{{- if .Values.image.digest -}}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" .Values.image.digest) -}}
{{- fail (printf "image.digest %q: want sha256: and 64 hex digits, as `make image` prints" .Values.image.digest) -}}
{{- end -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/*
custody.validate fails the render on settings that cannot work or that
would put a secret into the release: secrets come from Secrets and
workload identity only.
*/}}
{{- define "custody.validate" -}}
{{- if not (has .Values.store.mode (list "embedded" "clickhouse")) -}}
{{- fail (printf "store.mode %q: want embedded or clickhouse" .Values.store.mode) -}}
{{- end -}}
{{- if not .Values.signingKey.secretName -}}
{{- fail "signingKey.secretName: the Secret holding the checkpoint signing key (custody keygen; see README, Deploy)" -}}
{{- end -}}
{{- if and (eq .Values.store.mode "clickhouse") (not .Values.store.clickhouse.dsnSecret.name) -}}
{{- fail "store.clickhouse.dsnSecret.name: the Secret holding the ClickHouse DSN (store.mode is clickhouse)" -}}
{{- end -}}
{{- if and .Values.workloadIdentity.enabled (not .Values.workloadIdentity.clientId) -}}
{{- fail "workloadIdentity.clientId: the client id of the managed identity or app registration the collector signs in as" -}}
{{- end -}}
{{- $cfg := toYaml (omit .Values.config "logLevel") -}}
{{- if regexMatch "(?m)^\\s*-?\\s*(connection_string|client_secret|password)\\s*:" $cfg -}}
{{- fail "config: connection strings, client secrets and passwords do not belong in values (they would land in a ConfigMap): use workload identity" -}}
{{- end -}}
{{- if regexMatch "[?&]sig=" $cfg -}}
{{- fail "config: a SAS token (sig=) does not belong in values: use workload identity" -}}
{{- end -}}
{{- if not (or .Values.config.eventhubs.namespace .Values.config.loganalytics.workspace_id) -}}
{{- fail "config: set config.eventhubs.namespace (and event_hub) or config.loganalytics.workspace_id: the collector needs a source" -}}
{{- end -}}
{{- end -}}

{{/* custody.config is custody.yaml: the values' sections plus the paths the pod mounts. */}}
{{- define "custody.config" -}}
{{- $c := dict "log_level" .Values.config.logLevel "metrics_addr" (printf ":%d" (int .Values.metrics.port)) "checkpoint_dir" "/var/lib/custody-checkpoints" "signing_key" "/etc/custody/keys/custody.key" "verify_key" "/etc/custody/keys/custody.pub" -}}
{{- if eq .Values.store.mode "embedded" -}}
{{- $_ := set $c "store" "/var/lib/custody/store" -}}
{{- else -}}
{{- $_ := set $c "database" .Values.store.clickhouse.database -}}
{{- with .Values.store.clickhouse.cluster }}{{ $_ := set $c "cluster" . }}{{ end -}}
{{- end -}}
{{- if .Values.config.eventhubs.namespace -}}
{{- $_ := set $c "eventhubs" .Values.config.eventhubs -}}
{{- end -}}
{{- if .Values.config.loganalytics.workspace_id -}}
{{- $_ := set $c "loganalytics" .Values.config.loganalytics -}}
{{- end -}}
{{- with .Values.config.pipeline }}{{ $_ := set $c "pipeline" . }}{{ end -}}
{{- with .Values.config.retention }}{{ $_ := set $c "retention" . }}{{ end -}}
{{- toYaml $c -}}
{{- end -}}

{{/* custody.pod is the pod template both workload kinds run. */}}
{{- define "custody.pod" -}}
metadata:
  labels:
    {{- include "custody.labels" . | nindent 4 }}
    {{- if .Values.workloadIdentity.enabled }}
    azure.workload.identity/use: "true"
    {{- end }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    checksum/config: {{ include "custody.config" . | sha256sum }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "custody.serviceAccountName" . }}
  # The collector never calls the Kubernetes API; the workload identity
  # webhook projects its own token for Entra ID.
  automountServiceAccountToken: false
  enableServiceLinks: false
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    runAsNonRoot: true
    runAsUser: 65532
    runAsGroup: 65532
    fsGroup: 65532
    fsGroupChangePolicy: OnRootMismatch
    seccompProfile:
      type: RuntimeDefault
  containers:
    - name: custody
      image: {{ include "custody.image" . }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["--config", "/etc/custody/config/custody.yaml", "run"]
      env:
        - name: CUSTODY_MEMORY_LIMIT_MIB
          value: {{ .Values.memoryLimitMiB | quote }}
        {{- if eq .Values.store.mode "clickhouse" }}
        - name: CUSTODY_CLICKHOUSE
          valueFrom:
            secretKeyRef:
              name: {{ .Values.store.clickhouse.dsnSecret.name }}
              key: {{ .Values.store.clickhouse.dsnSecret.key }}
        {{- end }}
      ports:
        - name: metrics
          containerPort: {{ .Values.metrics.port }}
          protocol: TCP
      livenessProbe:
        httpGet:
          path: /healthz
          port: metrics
        periodSeconds: 10
        timeoutSeconds: 5
        failureThreshold: 3
      readinessProbe:
        httpGet:
          path: /readyz
          port: metrics
        periodSeconds: 5
        timeoutSeconds: 5
        failureThreshold: 3
      resources:
        {{- toYaml (get .Values.resources .Values.store.mode) | nindent 8 }}
      securityContext:
        runAsNonRoot: true
        allowPrivilegeEscalation: false
        privileged: false
        readOnlyRootFilesystem: true
        capabilities:
          drop: ["ALL"]
        seccompProfile:
          type: RuntimeDefault
      volumeMounts:
        - name: config
          mountPath: /etc/custody/config
          readOnly: true
        - name: keys
          mountPath: /etc/custody/keys
          readOnly: true
        - name: data
          mountPath: /var/lib/custody
        - name: checkpoints
          mountPath: /var/lib/custody-checkpoints
        - name: tmp
          mountPath: /tmp
  volumes:
    - name: config
      configMap:
        name: {{ include "custody.fullname" . }}
    - name: keys
      secret:
        secretName: {{ .Values.signingKey.secretName }}
        # Readable by the pod's group (fsGroup) only: custody refuses a
        # signing key other users can read.
        defaultMode: 0440
        items:
          - key: {{ .Values.signingKey.signingKeyItem }}
            path: custody.key
          - key: {{ .Values.signingKey.verifyKeyItem }}
            path: custody.pub
    - name: tmp
      emptyDir:
        sizeLimit: 2Gi
    {{- if eq .Values.store.mode "clickhouse" }}
    # No local store: the working directory only.
    - name: data
      emptyDir:
        sizeLimit: 1Gi
    - name: checkpoints
      persistentVolumeClaim:
        claimName: {{ include "custody.fullname" . }}-checkpoints
    {{- end }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "custody.pvcSpec" -}}
accessModes: ["ReadWriteOnce"]
{{- with .storageClassName }}
storageClassName: {{ . }}
{{- end }}
resources:
  requests:
    storage: {{ .size }}
{{- end -}}
