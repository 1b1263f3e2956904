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

{{/* Images. "aistack.imageName" (list $ name): with image.registry set, the name's registry part (its first
     component when that holds a "." or ":" or is "localhost") replaced by image.registry, else prefixed:
     ghcr.io/aistack/aistack-hub -> <registry>/aistack/aistack-hub, aistack.local/aistack-job -> <registry>/aistack-job. */}}
{{- define "aistack.imageName" -}}
{{- $root := index . 0 -}}
{{- $name := index . 1 -}}
{{- $registry := (($root.Values.image | default dict).registry | default "") | trimSuffix "/" -}}
{{- if $registry -}}
{{- $parts := splitList "/" $name -}}
{{- $first := first $parts -}}
{{- if and (gt (len $parts) 1) (or (contains "." $first) (contains ":" $first) (eq $first "localhost")) -}}
{{- $name = join "/" (rest $parts) -}}
{{- end -}}
{{- printf "%s/%s" $registry $name -}}
{{- else -}}
{{- $name -}}
{{- end -}}
{{- end -}}
{{- define "aistack.hubImage" -}}
{{- printf "%s:%s" (include "aistack.imageName" (list $ .Values.hub.image.name)) (.Values.hub.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- define "aistack.serviceImage" -}}
{{- printf "%s:%s" (include "aistack.imageName" (list $ (.Values.aistack.image.name | default .Values.hub.image.name))) (.Values.aistack.image.tag | default .Values.hub.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- define "aistack.singleuserImage" -}}
{{- printf "%s:%s" (include "aistack.imageName" (list $ .Values.singleuser.image.name)) .Values.singleuser.image.tag -}}
{{- end -}}
{{- define "aistack.proxyImage" -}}
{{- printf "%s:%s" (include "aistack.imageName" (list $ .Values.proxy.chp.image.name)) .Values.proxy.chp.image.tag -}}
{{- end -}}
{{/* The jobs' image: aistack.jobs.image (a full reference, registry applied) or the single-user image */}}
{{- define "aistack.jobImage" -}}
{{- if .Values.aistack.jobs.image -}}
{{- include "aistack.imageName" (list $ .Values.aistack.jobs.image) -}}
{{- else -}}
{{- include "aistack.singleuserImage" . -}}
{{- end -}}
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

{{/* The deployment config file the hub and the service both load (aistack_hub/config.py): traitlets sections
     (a class name, then its traits) that the chart derives from its values, with .Values.config merged
     over them (yours win), and the data sections. Every tenant gets its namespace (its `namespace` value,
     else tenantNamespaces.prefix + name), so servers, jobs, RBAC and quota all use the same one. */}}
{{- define "aistack.config" -}}
{{- $su := .Values.singleuser -}}
{{- $a := .Values.aistack -}}
{{- $hubName := include "aistack.component" (list $ "hub") -}}
{{- $serviceName := include "aistack.component" (list $ "aistack") -}}
{{- $tenants := list -}}
{{- range .Values.tenants -}}
{{- $t := omit . "namespace" "resourceQuota" -}}
{{- $_ := set $t "namespace" (include "aistack.tenantNamespace" (list $ .)) -}}
{{- $tenants = append $tenants $t -}}
{{- end -}}
{{- $spawner := dict
  "image" (include "aistack.singleuserImage" .)
  "image_pull_policy" $su.image.pullPolicy
  "uid" $su.uid "fs_gid" $su.fsGid
  "namespace" .Release.Namespace
  "automount_service_account_token" false
  "extra_labels" (dict "hub.jupyter.org/network-access-hub" "true")
  "enable_user_namespaces" $su.namespacePerTenant -}}
{{- if eq $su.storage.type "dynamic" -}}
{{- $_ := set $spawner "storage_pvc_ensure" true -}}
{{- $_ := set $spawner "storage_capacity" $su.storage.capacity -}}
{{- if $su.storage.storageClassName }}{{ $_ := set $spawner "storage_class" $su.storage.storageClassName }}{{ end -}}
{{- $_ := set $spawner "pvc_name_template" "claim-{username}{servername}" -}}
{{- $_ := set $spawner "volumes" (list (dict "name" "home" "persistentVolumeClaim" (dict "claimName" "{pvc_name}"))) -}}
{{- $_ := set $spawner "volume_mounts" (list (dict "name" "home" "mountPath" "/home/jovyan")) -}}
{{- end -}}
{{- if not (kindIs "invalid" $su.cpu.guarantee) }}{{ $_ := set $spawner "cpu_guarantee" $su.cpu.guarantee }}{{ end -}}
{{- if not (kindIs "invalid" $su.cpu.limit) }}{{ $_ := set $spawner "cpu_limit" $su.cpu.limit }}{{ end -}}
{{- if not (kindIs "invalid" $su.memory.guarantee) }}{{ $_ := set $spawner "mem_guarantee" $su.memory.guarantee }}{{ end -}}
{{- if not (kindIs "invalid" $su.memory.limit) }}{{ $_ := set $spawner "mem_limit" $su.memory.limit }}{{ end -}}
{{- if $su.profileList }}{{ $_ := set $spawner "profile_list" $su.profileList }}{{ end -}}
{{- $sections := dict
  "AIStackHub" (dict
    "service_url" (printf "http://%s:%v" $serviceName $a.port)
    "data_dir" "/srv/jupyterhub")
  "JupyterHub" (dict
    "bind_url" "http://:8000"
    "hub_bind_url" "http://:8081"
    "hub_connect_url" (printf "http://%s:%v" $hubName .Values.hub.service.port)
    "cleanup_servers" false
    "spawner_class" "spawner.kube.KubeGPUSpawner")
  "ConfigurableHTTPProxy" (dict
    "should_start" false
    "api_url" (printf "http://%s:8001" (include "aistack.component" (list $ "proxy-api"))))
  "KubeSpawner" $spawner
  "KubeGPUSpawner" (dict
    "slice_backend" $su.sliceBackend
    "tenant_namespaces" $su.namespacePerTenant
    "create_tenant_namespaces" false)
  "SliceRenderer" (dict "backend" $su.sliceBackend)
  "AIStackService" (dict
    "ip" "0.0.0.0"
    "port" $a.port
    "data_dir" "/srv/aistack"
    "executor_class" (get (dict "kubernetes" "job_runner.executors.kubernetes.KubernetesExecutor" "local" "job_runner.executors.local.LocalExecutor" "noop" "job_runner.executors.noop.NoopExecutor") $a.executor)
    "validate_kernels" false)
  "KubernetesExecutor" (dict
    "namespace_template" (printf "%s{tenant}" .Values.tenantNamespaces.prefix)
    "create_namespaces" false
    "reconcile_namespaces" (splitList "," (include "aistack.tenantNamespaceList" .))
    "image" (include "aistack.jobImage" .)
    "service_url" (printf "http://%s.%s.svc:%v/services/aistack/api/" $serviceName .Release.Namespace $a.port)
    "ttl_seconds_after_finished" $a.jobs.ttlSecondsAfterFinished
    "watch_nodes" (and .Values.rbac.create .Values.rbac.nodes)) -}}
{{- $config := mergeOverwrite $sections (deepCopy (.Values.config | default dict)) -}}
{{- $_ := set $config "tenants" $tenants -}}
{{- $_ := set $config "profiles" .Values.profiles -}}
{{- if .Values.inventory -}}
{{- $_ := set $config "inventory" .Values.inventory -}}
{{- end -}}
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

{{/* hostNetwork and hostAliases of the hub, proxy and service pods (see values.yaml: hostNetwork) */}}
{{- define "aistack.podNetwork" -}}
{{- if .Values.hostNetwork }}
hostNetwork: true
{{- end }}
{{- with .Values.hostAliases }}
hostAliases: {{ toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
