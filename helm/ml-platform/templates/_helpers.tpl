{{/* Names */}}
{{- define "mlp.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mlp.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "mlp.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "mlp.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "mlp.selectorLabels" -}}
app.kubernetes.io/name: {{ include "mlp.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "mlp.labels" -}}
{{ include "mlp.selectorLabels" . }}
app.kubernetes.io/part-of: ml-platform
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "mlp.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "mlp.serviceAccountName" -}}
{{- default (include "mlp.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Pods that never call the Kubernetes API (MLflow, PostgreSQL, training) use this one. */}}
{{- define "mlp.workloadServiceAccountName" -}}
{{- printf "%s-workload" (include "mlp.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "mlp.pgHost" -}}
{{- if .Values.postgresql.enabled -}}
{{- printf "%s-postgresql" (include "mlp.fullname" .) -}}
{{- else -}}
{{- required "postgresql.host is required when postgresql.enabled is false" .Values.postgresql.host -}}
{{- end -}}
{{- end -}}

{{- define "mlp.pgSecret" -}}
{{- required "postgresql.existingSecret (a Secret with key postgresql-password) is required" .Values.postgresql.existingSecret -}}
{{- end -}}

{{- define "mlp.mlflowService" -}}
{{- printf "%s-mlflow" (include "mlp.fullname" .) -}}
{{- end -}}

{{- define "mlp.mlflowUrl" -}}
{{- printf "http://%s:%v" (include "mlp.mlflowService" .) .Values.mlflow.port -}}
{{- end -}}

{{- define "mlp.userCodeService" -}}
{{- printf "%s-user-code" (include "mlp.fullname" .) -}}
{{- end -}}

{{/* Existing Secrets every client of S3 and MLflow gets as environment (envFrom). */}}
{{- define "mlp.clientSecrets" -}}
{{- $secrets := list -}}
{{- if .Values.s3.existingSecret -}}{{- $secrets = append $secrets .Values.s3.existingSecret -}}{{- end -}}
{{- if .Values.mlflow.auth.enabled -}}{{- $secrets = append $secrets (required "mlflow.auth.clientSecret is required with mlflow.auth.enabled" .Values.mlflow.auth.clientSecret) -}}{{- end -}}
{{- toJson $secrets -}}
{{- end -}}

{{- define "mlp.envFrom" -}}
- configMapRef:
    name: {{ include "mlp.fullname" . }}-env
{{- range (include "mlp.clientSecrets" . | fromJsonArray) }}
- secretRef:
    name: {{ . }}
{{- end }}
{{- end -}}

{{- define "mlp.pgPasswordEnv" -}}
- name: DAGSTER_PG_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mlp.pgSecret" . }}
      key: postgresql-password
{{- end -}}

{{- define "mlp.podSecurityContext" -}}
{{ toYaml .Values.podSecurityContext }}
{{- end -}}

{{- define "mlp.containerSecurityContext" -}}
{{ toYaml .Values.containerSecurityContext }}
{{- end -}}

{{- define "mlp.imagePullSecrets" -}}
{{- if .Values.imagePullSecrets }}
imagePullSecrets:
{{- range .Values.imagePullSecrets }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Where the CA bundle ConfigMap is mounted, and its file. */}}
{{- define "mlp.caDir" -}}/etc/ml-platform/ca{{- end -}}
{{- define "mlp.caFile" -}}{{ printf "%s/%s" (include "mlp.caDir" .) .Values.caBundle.key }}{{- end -}}

{{/* Proxy and CA variables (name: value), for the env ConfigMap and MLflow's env. */}}
{{- define "mlp.outboundEnv" -}}
{{- $env := dict -}}
{{- with .Values.proxy.httpProxy }}{{ $_ := set $env "HTTP_PROXY" . }}{{ $_ := set $env "http_proxy" . }}{{ end -}}
{{- with .Values.proxy.httpsProxy }}{{ $_ := set $env "HTTPS_PROXY" . }}{{ $_ := set $env "https_proxy" . }}{{ end -}}
{{- if or .Values.proxy.httpProxy .Values.proxy.httpsProxy -}}
{{- $local := list "localhost" "127.0.0.1" ".svc" ".cluster.local" (include "mlp.mlflowService" .) (include "mlp.userCodeService" .) (include "mlp.pgHost" .) (printf "%s-webserver" (include "mlp.fullname" .)) -}}
{{- with .Values.proxy.noProxy }}{{ $local = append $local . }}{{ end -}}
{{- $_ := set $env "NO_PROXY" (join "," $local) -}}{{- $_ := set $env "no_proxy" (join "," $local) -}}
{{- end -}}
{{- if .Values.caBundle.configMap -}}
{{- range $name := list "SSL_CERT_FILE" "REQUESTS_CA_BUNDLE" "AWS_CA_BUNDLE" -}}
{{- $_ := set $env $name (include "mlp.caFile" $) -}}
{{- end -}}
{{- end -}}
{{- toJson $env -}}
{{- end -}}

{{- define "mlp.caVolume" -}}
{{- if .Values.caBundle.configMap }}
- name: ca-bundle
  configMap:
    name: {{ .Values.caBundle.configMap }}
    items:
      - key: {{ .Values.caBundle.key }}
        path: {{ .Values.caBundle.key }}
{{- end }}
{{- end -}}

{{- define "mlp.caVolumeMount" -}}
{{- if .Values.caBundle.configMap }}
- name: ca-bundle
  mountPath: {{ include "mlp.caDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* The model specs ConfigMap (specs.configMap), replacing the image's specs. */}}
{{- define "mlp.specsDir" -}}/etc/ml-platform/specs{{- end -}}

{{- define "mlp.specsVolume" -}}
{{- if .Values.specs.configMap }}
- name: specs
  configMap:
    name: {{ .Values.specs.configMap }}
{{- end }}
{{- end -}}

{{- define "mlp.specsVolumeMount" -}}
{{- if .Values.specs.configMap }}
- name: specs
  mountPath: {{ include "mlp.specsDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* DAGSTER_HOME (the instance ConfigMap), the workspace, a writable /tmp, the CA bundle and
the specs (when set). */}}
{{- define "mlp.dagsterVolumes" -}}
- name: instance
  configMap:
    name: {{ include "mlp.fullname" . }}-instance
- name: workspace
  configMap:
    name: {{ include "mlp.fullname" . }}-workspace
- name: tmp
  emptyDir: {}
{{- include "mlp.caVolume" . }}
{{- include "mlp.specsVolume" . }}
{{- end -}}

{{- define "mlp.dagsterVolumeMounts" -}}
- name: instance
  mountPath: {{ .Values.dagster.home }}
  readOnly: true
- name: workspace
  mountPath: /opt/dagster/workspace
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- include "mlp.caVolumeMount" . }}
{{- include "mlp.specsVolumeMount" . }}
{{- end -}}

{{/* libpq parameters as a URL query: {sslmode: require} -> sslmode=require */}}
{{- define "mlp.query" -}}
{{- $pairs := list -}}
{{- range $k, $v := . }}{{ $pairs = append $pairs (printf "%s=%v" $k $v) }}{{ end -}}
{{- join "&" $pairs -}}
{{- end -}}

{{/* MLflow's backend store as environment (the server's and the upgrade hook's). `mlflow
server` reads --backend-store-uri from MLFLOW_BACKEND_STORE_URI: the password stays out of the
command line (ps, /proc/<pid>/cmdline). Kubernetes expands $(VAR) from the variables before it
(the password must be URL-safe). psycopg2 is named: SQLAlchemy >= 2.1 defaults to psycopg 3. */}}
{{- define "mlp.mlflowBackendEnv" -}}
{{- $params := "" -}}
{{- with .Values.postgresql.params }}{{ $params = printf "?%s" (include "mlp.query" .) }}{{ end -}}
- name: MLFLOW_DB_USER
  value: {{ .Values.postgresql.username | quote }}
- name: MLFLOW_DB_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "mlp.pgSecret" . }}
      key: postgresql-password
- name: MLFLOW_BACKEND_STORE_URI
  value: {{ printf "postgresql+psycopg2://$(MLFLOW_DB_USER):$(MLFLOW_DB_PASSWORD)@%s:%v/%s%s" (include "mlp.pgHost" .) .Values.postgresql.port .Values.postgresql.mlflowDatabase $params | quote }}
{{- end -}}

{{/* Dagster's storage section of dagster.yaml (the instance's, and the migration hook's). */}}
{{- define "mlp.dagsterStorage" -}}
storage:
  postgres:
    postgres_db:
      hostname: {env: DAGSTER_PG_HOST}
      port: {env: DAGSTER_PG_PORT}
      username: {env: DAGSTER_PG_USERNAME}
      password: {env: DAGSTER_PG_PASSWORD}
      db_name: {env: DAGSTER_PG_DB}
      # Name the driver: SQLAlchemy >= 2.1 maps a bare `postgresql://` to psycopg 3.
      scheme: postgresql+psycopg2
      {{- with .Values.postgresql.params }}
      params:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end -}}

{{/* The serving settings the `serving` step reads ($ML_PLATFORM_SERVING); "" with no model enabled. */}}
{{- define "mlp.servingSettings" -}}
{{- $full := include "mlp.fullname" . -}}
{{- $models := dict -}}
{{- range $model, $m := .Values.serving.models -}}
{{- if $m.enabled -}}
{{- $_ := set $models $model (printf "%s-serve-%s" $full ($model | replace "_" "-") | trunc 63 | trimSuffix "-") -}}
{{- end -}}
{{- end -}}
{{- if $models -}}
{{- toJson (dict "namespace" .Release.Namespace "target" .Values.serving.target
     "rollout_timeout_s" .Values.serving.rolloutTimeoutSeconds
     "artifacts_uri" (printf "s3://%s/%s" .Values.s3.bucket .Values.s3.mlflowArtifactsPrefix)
     "models" $models) -}}
{{- end -}}
{{- end -}}
