{{/* Name of the release's objects, at most 63 characters. */}}
{{- define "concurrent.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "concurrent.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "concurrent.labels" -}}
{{ include "concurrent.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The namespace of worker and build Jobs. */}}
{{- define "concurrent.workerNamespace" -}}
{{- .Values.workers.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "concurrent.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "concurrent.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "concurrent.workerServiceAccountName" -}}
{{- if .Values.workers.serviceAccount.create -}}
{{- .Values.workers.serviceAccount.name | default (printf "%s-worker" (include "concurrent.fullname" .) | trunc 63 | trimSuffix "-") -}}
{{- else -}}
{{- .Values.workers.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the API tokens. */}}
{{- define "concurrent.tokensSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-tokens" (include "concurrent.fullname" .)) -}}
{{- end -}}

{{- define "concurrent.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The clusters file: the one given, else this cluster alone (in_cluster: true). */}}
{{- define "concurrent.clustersFile" -}}
{{- if .Values.clusters.file -}}
{{ .Values.clusters.file }}
{{- else -}}
clusters:
  - name: {{ .Values.workers.clusterName }}
    in_cluster: true
    namespace: {{ include "concurrent.workerNamespace" . }}
    max_workers: {{ .Values.workers.maxWorkers }}
    burst_after: {{ .Values.workers.burstAfter }}
    service_account: {{ include "concurrent.workerServiceAccountName" . }}
    worker_image: {{ include "concurrent.image" . }}
    {{- with .Values.workers.nodeSelector }}
    node_selector:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.workers.tolerations }}
    tolerations:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    {{- with .Values.workers.imagePullSecrets }}
    image_pull_secrets:
      {{- toYaml . | nindent 6 }}
    {{- end }}
    nats_url: {{ .Values.nats.url }}
    {{- with .Values.nats.credentialsSecret }}
    nats_url_secret:
      name: {{ . }}
      key: url
    {{- end }}
    mlflow_tracking_uri: {{ .Values.mlflow.trackingUri }}
    {{- with .Values.mlflow.tokenSecret.name }}
    mlflow_token_secret:
      name: {{ . }}
      key: {{ $.Values.mlflow.tokenSecret.key }}
    {{- end }}
    {{- with .Values.images.registry }}
    images:
      registry: {{ . }}
      repository: {{ $.Values.images.repository }}
      {{- with $.Values.images.pushSecret }}
      push_secret: {{ . }}
      {{- end }}
      insecure: {{ $.Values.images.insecureRegistry }}
      builder_image: {{ $.Values.images.builderImage }}
    {{- end }}
{{- end }}
{{- end -}}
