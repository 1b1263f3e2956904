{{/* Names ---------------------------------------------------------------------------- */}}
{{- define "aistack.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "aistack.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "aistack.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "aistack.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* "aistack.component" (list $ "hub") -> <fullname>-hub */}}
{{- define "aistack.component" -}}
{{- $root := index . 0 -}}
{{- printf "%s-%s" (include "aistack.fullname" $root | trunc 54 | trimSuffix "-") (index . 1) -}}
{{- end -}}

{{- define "aistack.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "aistack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: "aistack.selector" (list $ "hub") */}}
{{- define "aistack.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "aistack.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* The namespace of a tenant: its `namespace` key, else prefix + name. Arg: (list $ tenant) */}}
{{- define "aistack.tenantNamespace" -}}
{{- $root := index . 0 -}}
{{- $tenant := index . 1 -}}
{{- $tenant.namespace | default (printf "%s%s" $root.Values.tenantNamespaces.prefix ($tenant.name | lower | replace "_" "-")) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Images */}}
{{- define "aistack.hubImage" -}}
{{- printf "%s:%s" .Values.hub.image.name (.Values.hub.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- define "aistack.serviceImage" -}}
{{- printf "%s:%s" (.Values.aistack.image.name | default .Values.hub.image.name) (.Values.aistack.image.tag | default .Values.hub.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- define "aistack.singleuserImage" -}}
{{- printf "%s:%s" .Values.singleuser.image.name .Values.singleuser.image.tag -}}
{{- end -}}

{{/* A secret value: the given one, else the one already in the cluster (upgrades), else 64 random
     hex digits (JupyterHub requires a hex cookie secret). Arg: (list $ secretName key given) */}}
{{- define "aistack.secretValue" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $key := index . 2 -}}
{{- $given := index . 3 -}}
{{- if $given -}}
{{- $given -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace $name -}}
{{- if and $existing (index ($existing.data | default dict) $key) -}}
{{- index $existing.data $key | b64dec -}}
{{- else -}}
{{- randAlphaNum 64 | sha256sum -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The deployment config the service and the hub read (aistack_hub/config.py). Chart-only tenant keys are dropped. */}}
{{- define "aistack.deploymentConfig" -}}
{{- $tenants := list -}}
{{- range .Values.tenants -}}
{{- $tenants = append $tenants (omit . "namespace" "resourceQuota") -}}
{{- end -}}
{{- $config := dict "tenants" $tenants "profiles" .Values.profiles "scheduler" .Values.scheduler -}}
{{- if .Values.inventory -}}
{{- $_ := set $config "inventory" .Values.inventory -}}
{{- end -}}
{{- toYaml $config -}}
{{- end -}}

{{- define "aistack.hubDeploymentConfig" -}}
{{- $config := include "aistack.deploymentConfig" . | fromYaml -}}
{{- $_ := set $config "hub" .Values.hub.config -}}
{{- toYaml $config -}}
{{- end -}}

{{/* The list of tenant namespaces (comma separated) */}}
{{- define "aistack.tenantNamespaceList" -}}
{{- $root := . -}}
{{- $names := list -}}
{{- range .Values.tenants -}}
{{- $names = append $names (include "aistack.tenantNamespace" (list $root .)) -}}
{{- end -}}
{{- join "," $names -}}
{{- end -}}

{{/* Security contexts */}}
{{- define "aistack.podSecurityContext" -}}
{{- toYaml .Values.podSecurityContext -}}
{{- end -}}
{{- define "aistack.containerSecurityContext" -}}
{{- toYaml .Values.containerSecurityContext -}}
{{- end -}}

{{/* Environment from a map (name: value) */}}
{{- define "aistack.env" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end -}}
{{- end -}}

{{/* Env var holding a database URL: from a user Secret (urlSecret), the chart Secret (url), or SQLite on the PVC.
     Arg: (list $ db envName chartSecretKey sqlitePath) */}}
{{- define "aistack.dbUrlEnv" -}}
{{- $root := index . 0 -}}
{{- $db := index . 1 -}}
- name: {{ index . 2 }}
{{- if eq $db.type "sqlite-pvc" }}
  value: {{ printf "sqlite:///%s" (index . 4) | quote }}
{{- else if $db.urlSecret.name }}
  valueFrom:
    secretKeyRef: {name: {{ $db.urlSecret.name | quote }}, key: {{ $db.urlSecret.key | default "url" | quote }}}
{{- else if $db.url }}
  valueFrom:
    secretKeyRef: {name: {{ include "aistack.component" (list $root "secret") | quote }}, key: {{ index . 3 | quote }}}
{{- else }}
{{- fail (printf "%s: db.type %s needs db.urlSecret.name (a Secret holding the URL) or db.url" (index . 2) $db.type) }}
{{- end }}
{{- end -}}
