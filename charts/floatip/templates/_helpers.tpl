{{/* Names: <release>-floatip, or the release name alone when it already says floatip. */}}
{{- define "floatip.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "floatip.fullname" -}}
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

{{- define "floatip.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "floatip.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* Selector labels of one component: (dict "ctx" $ "component" "controller") */}}
{{- define "floatip.selectorLabels" -}}
app.kubernetes.io/name: {{ include "floatip.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{- define "floatip.componentLabels" -}}
{{ include "floatip.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The controller finds agent pods by these labels (--agent-selector). */}}
{{- define "floatip.agentSelector" -}}
{{- printf "app.kubernetes.io/name=%s,app.kubernetes.io/instance=%s,app.kubernetes.io/component=agent" (include "floatip.name" .) .Release.Name }}
{{- end }}

{{/* An admin server's --admin-addr from its {address, port} values, IPv6 in brackets. */}}
{{- define "floatip.listen" -}}
{{- ternary (printf "[%s]:%v" .address .port) (printf "%s:%v" .address .port) (contains ":" .address) }}
{{- end }}

{{- define "floatip.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "floatip.controllerServiceAccount" -}}
{{- if .Values.controller.serviceAccount.create }}
{{- default (printf "%s-controller" (include "floatip.fullname" .)) .Values.controller.serviceAccount.name }}
{{- else }}
{{- required "controller.serviceAccount.name is required when controller.serviceAccount.create is false" .Values.controller.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "floatip.agentServiceAccount" -}}
{{- if .Values.agent.serviceAccount.create }}
{{- default (printf "%s-agent" (include "floatip.fullname" .)) .Values.agent.serviceAccount.name }}
{{- else }}
{{- required "agent.serviceAccount.name is required when agent.serviceAccount.create is false" .Values.agent.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Settings of the processes that call EC2 (the controller and attach). */}}
{{- define "floatip.awsEnv" -}}
- name: FLOATIP_CLUSTER_NAME
  value: {{ required "clusterName is required: the EKS cluster's name" .Values.clusterName | quote }}
- name: AWS_REGION
  value: {{ required "aws.region is required, e.g. us-west-2" .Values.aws.region | quote }}
{{- end }}

{{- define "floatip.logEnv" -}}
- name: RUST_LOG
  value: {{ .Values.logLevel | quote }}
- name: FLOATIP_LOG_FORMAT
  value: {{ .Values.logFormat | quote }}
{{- end }}

{{/* Host flags shared by the agent and its attach init container. */}}
{{- define "floatip.hostArgs" -}}
- --route-table-base={{ .Values.agent.routeTableBase }}
- --rule-priority={{ .Values.agent.rulePriority }}
- --fwmark-mask={{ .Values.agent.fwmarkMask }}
- --garp={{ .Values.agent.garp }}
{{- end }}

{{/* The agent's container securityContext: root for netlink, but only the capabilities it uses. */}}
{{- define "floatip.agentSecurityContext" -}}
runAsUser: 0
runAsGroup: 0
runAsNonRoot: false
privileged: false
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
  add:
    - NET_ADMIN
    {{- if .Values.agent.garp }}
    - NET_RAW
    {{- end }}
seccompProfile:
  type: RuntimeDefault
{{- end }}
