{{/* The three services, in start order: ingest creates the topics. */}}
{{- define "agentwatch.services" -}}
ingest detector responder
{{- end -}}

{{- define "agentwatch.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "agentwatch.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one service; call with (list $ "ingest"). */}}
{{- define "agentwatch.selector" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ $.Chart.Name }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "agentwatch.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "agentwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "agentwatch.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The configuration file: the values' config plus what the chart owns. */}}
{{- define "agentwatch.config" -}}
{{- $http := dict "addr" (printf "0.0.0.0:%d" (int .Values.http.port)) -}}
{{- if .Values.http.webConfig.existingSecret -}}
{{- $_ := set $http "web_config_file" "/etc/agentwatch/web/web.yml" -}}
{{- else if .Values.http.insecureListenAck -}}
{{- $_ := set $http "insecure_listen_ack" true -}}
{{- end -}}
{{- $responder := dict "state_dir" "/var/lib/agentwatch/responder" "api_addr" (printf "0.0.0.0:%d" (int .Values.responder.apiPort)) -}}
{{- if .Values.responder.apiWebConfig.existingSecret -}}
{{- $_ := set $responder "api_web_config_file" "/etc/agentwatch/api-web/web.yml" -}}
{{- else if .Values.responder.apiInsecureListenAck -}}
{{- $_ := set $responder "api_insecure_listen_ack" true -}}
{{- end -}}
{{- if .Values.responder.sharedEvidence.enabled -}}
{{- $_ := set $responder "evidence_dir" "/var/lib/agentwatch/evidence" -}}
{{- end -}}
{{- $owned := dict "http" $http "responder" $responder -}}
{{- mustMergeOverwrite (deepCopy .Values.config) $owned | toYaml -}}
{{- end -}}

{{/* The secret files of one service, as a dict of config key → Secret key. */}}
{{- define "agentwatch.secretFiles" -}}
{{- $ := index . 0 -}}
{{- $files := dict -}}
{{- if $.Values.secrets.existingSecret -}}
{{- range $k, $v := $.Values.secrets.files }}{{ if $v }}{{ $_ := set $files $k $v }}{{ end }}{{ end -}}
{{- if eq (index . 1) "responder" -}}
{{- range $k, $v := $.Values.secrets.responderFiles }}{{ if $v }}{{ $_ := set $files $k $v }}{{ end }}{{ end -}}
{{- end -}}
{{- end -}}
{{- toJson $files -}}
{{- end -}}


{{/* The httpGet of a probe of path; call with (list $ "/healthz"). */}}
{{- define "agentwatch.probe" -}}
{{- $ := index . 0 -}}
httpGet:
  path: {{ index . 1 }}
  port: http
  scheme: {{ ternary "HTTPS" "HTTP" $.Values.http.webConfig.tls }}
  {{- with $.Values.http.webConfig.probeAuthorization }}
  httpHeaders:
    - name: Authorization
      value: {{ . | quote }}
  {{- end }}
{{- end -}}

{{/* The replica count of one service; call with (list $ "responder"). */}}
{{- define "agentwatch.replicas" -}}
{{- $ := index . 0 -}}
{{- $n := int (index $.Values (index . 1)).replicas -}}
{{- if lt $n 1 -}}
{{- fail (printf "%s.replicas is %d; it must be at least 1 (scale down with kubectl, or uninstall)" (index . 1) $n) -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/* The pod affinity of one service: its `affinity` if set; for the
responder otherwise an anti-affinity across nodes (responder.podAntiAffinity:
preferred, required or none), so that one node's loss leaves an instance. */}}
{{- define "agentwatch.affinity" -}}
{{- $ := index . 0 -}}
{{- $svc := index . 1 -}}
{{- $v := index $.Values $svc -}}
{{- if $v.affinity -}}
{{- toYaml $v.affinity -}}
{{- else if eq $svc "responder" -}}
{{- $term := dict "topologyKey" "kubernetes.io/hostname" "labelSelector" (dict "matchLabels" (include "agentwatch.selector" (list $ $svc) | fromYaml)) -}}
{{- if eq $v.podAntiAffinity "preferred" -}}
{{- toYaml (dict "podAntiAffinity" (dict "preferredDuringSchedulingIgnoredDuringExecution" (list (dict "weight" 100 "podAffinityTerm" $term)))) -}}
{{- else if eq $v.podAntiAffinity "required" -}}
{{- toYaml (dict "podAntiAffinity" (dict "requiredDuringSchedulingIgnoredDuringExecution" (list $term))) -}}
{{- else if ne $v.podAntiAffinity "none" -}}
{{- fail (printf "responder.podAntiAffinity is %q; want preferred, required or none" $v.podAntiAffinity) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The claim of the responders' shared evidence volume. */}}
{{- define "agentwatch.sharedEvidenceClaim" -}}
{{- .Values.responder.sharedEvidence.existingClaim | default (printf "%s-responder-evidence" (include "agentwatch.fullname" .)) -}}
{{- end -}}
