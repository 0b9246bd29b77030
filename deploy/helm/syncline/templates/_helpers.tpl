{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "syncline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Release-qualified name; the release name alone when it already contains the chart name.
*/}}
{{- define "syncline.fullname" -}}
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

{{/*
Name of one component's objects: call with (dict "root" $ "component" "api").
*/}}
{{- define "syncline.componentName" -}}
{{- printf "%s-%s" (include "syncline.fullname" .root | trunc 52 | trimSuffix "-") .component }}
{{- end }}

{{- define "syncline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "syncline.labels" -}}
helm.sh/chart: {{ include "syncline.chart" . }}
{{ include "syncline.selectorLabels" . }}
app.kubernetes.io/version: {{ include "syncline.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels that select the release's pods; each template adds app.kubernetes.io/component.
*/}}
{{- define "syncline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "syncline.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "syncline.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{- define "syncline.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (include "syncline.imageTag" .) }}
{{- end }}
{{- end }}

{{- define "syncline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "syncline.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The Secret holding the environment: the user's own, or the one this chart renders.
*/}}
{{- define "syncline.secretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- printf "%s-config" (include "syncline.fullname" .) }}
{{- end }}
{{- end }}

{{/*
Pod annotations shared by every Syncline pod: a change of config rolls the pods.
*/}}
{{- define "syncline.configChecksum" -}}
checksum/config: {{ include (print .Template.BasePath "/secret.yaml") . | sha256sum }}
{{- end }}

{{/*
Pod-level settings shared by the api, worker and provision pods.
*/}}
{{- define "syncline.podCommon" -}}
serviceAccountName: {{ include "syncline.serviceAccountName" . }}
automountServiceAccountToken: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/*
Container-level settings shared by every Syncline container (image, security, environment
source, mounts). The caller adds name, args and env.
*/}}
{{- define "syncline.containerCommon" -}}
image: {{ include "syncline.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
{{- with .Values.securityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
envFrom:
  - secretRef:
      name: {{ include "syncline.secretName" . }}
  {{- with .Values.extraEnvFrom }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  {{- with .Values.extraVolumeMounts }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}

{{/*
Volumes matching syncline.containerCommon's mounts.
*/}}
{{- define "syncline.volumes" -}}
volumes:
  - name: tmp
    emptyDir: {}
  {{- with .Values.extraVolumes }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end }}
