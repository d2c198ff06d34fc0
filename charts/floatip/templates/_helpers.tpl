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

{{/* Every object's labels; commonLabels never replace the chart's own. */}}
{{- define "floatip.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "floatip.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with omit (default dict .Values.commonLabels) "helm.sh/chart" "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/version" "app.kubernetes.io/managed-by" "app.kubernetes.io/component" }}
{{ toYaml . }}
{{- end }}
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

{{/* repository@digest when a digest is set (the tag is then ignored), else repository:tag. */}}
{{- define "floatip.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* A pod template's labels: the selector labels, commonLabels and the component's podLabels.
(dict "ctx" $ "component" "agent" "podLabels" .Values.agent.podLabels) */}}
{{- define "floatip.podLabels" -}}
{{- $selector := include "floatip.selectorLabels" . | fromYaml }}
{{- toYaml (merge $selector (default dict .podLabels) (default dict .ctx.Values.commonLabels)) }}
{{- end }}

{{/* A probe: the HTTP handler on the admin port, then the timing values. */}}
{{- define "floatip.probe" -}}
httpGet:
  path: {{ .path }}
  port: admin
{{ toYaml .timing }}
{{- end }}

{{/* A duration value (500ms, 4s, 1m30s, 1h) in seconds, as a float: for checks between values. */}}
{{- define "floatip.seconds" -}}
{{- $total := 0.0 }}
{{- range regexFindAll "[0-9]+(\\.[0-9]+)?(ms|h|m|s)" . -1 }}
{{- $unit := regexFind "(ms|h|m|s)$" . }}
{{- $n := float64 (trimSuffix $unit .) }}
{{- $scale := get (dict "ms" 0.001 "s" 1.0 "m" 60.0 "h" 3600.0) $unit }}
{{- $total = addf $total (mulf $n $scale) }}
{{- end }}
{{- $total }}
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

{{/* The agent's container securityContext (agent.securityContext: root for netlink, only
NET_ADMIN), with NET_RAW added for gratuitous ARP. */}}
{{- define "floatip.agentSecurityContext" -}}
{{- $sc := deepCopy .Values.agent.securityContext }}
{{- if .Values.agent.garp }}
{{- $caps := default dict $sc.capabilities }}
{{- $add := default list $caps.add }}
{{- if not (has "NET_RAW" $add) }}
{{- $_ := set $caps "add" (append $add "NET_RAW") }}
{{- end }}
{{- $_ := set $sc "capabilities" $caps }}
{{- end }}
{{- toYaml $sc }}
{{- end }}
