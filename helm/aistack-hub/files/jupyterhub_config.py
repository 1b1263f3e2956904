# jupyterhub_config.py of the aistack-hub chart (mounted from a ConfigMap).
# The product's own configuration (aistack_hub.hubconfig.configure: authentication, tenants as
# groups, roles and scopes, the GPU-slice spawner's settings) with what differs on Kubernetes:
# the proxy and the aistack service are separate pods, secrets come from the chart's Secret, and
# servers are KubeGPUSpawner pods. Chart settings are in chart/values.yaml (z2jh style: this file
# holds logic, the values hold data). hub.extraConfig snippets run last.
import os

import yaml

from aistack_hub import hubconfig

# Paths are overridable so tests can load this file outside a pod.
CHART_VALUES = os.environ.get("AISTACK_CHART_VALUES", "/usr/local/etc/jupyterhub/chart/values.yaml")
with open(CHART_VALUES) as f:
    chart = yaml.safe_load(f)
names = chart["names"]
service_url = f"http://{names['aistack']}:{chart['aistackPort']}"
service_token = os.environ["AISTACK_SERVICE_API_TOKEN"]

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

# configure() looks up the configurable-http-proxy executable it would start; here the proxy is
# its own Deployment, so the hub image needs none.
hubconfig.configurable_http_proxy = lambda: "configurable-http-proxy"
hubconfig.configure(
    c,
    config_path=os.environ.get("AISTACK_DEPLOYMENT_CONFIG", "/etc/aistack/deployment.yaml"),
    data_dir=os.environ.get("AISTACK_HUB_DATA_DIR", "/srv/jupyterhub"),
    spawner_class="spawner.kube.KubeGPUSpawner",
)

# Hub, proxy and service are separate pods.
c.JupyterHub.bind_url = "http://:8000"
c.JupyterHub.hub_bind_url = "http://:8081"
c.JupyterHub.hub_connect_url = f"http://{names['hub']}:{chart['hubPort']}"
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = f"http://{names['proxyApi']}:8001"
c.ConfigurableHTTPProxy.auth_token = os.environ["CONFIGPROXY_AUTH_TOKEN"]
# The cookie secret: JPY_COOKIE_SECRET from the chart's Secret (JupyterHub prefers it to the file).
c.JupyterHub.db_url = os.environ["AISTACK_HUB_DB_URL"]
c.JupyterHub.cleanup_servers = False  # servers survive a hub restart, as in z2jh

# The aistack service: an external service (its own Deployment) instead of a hub-managed process.
services = []
for service in c.JupyterHub.services:
    if service["name"] == hubconfig.SERVICE_NAME:
        service = {k: v for k, v in service.items() if k not in ("command", "environment", "cwd")}
        service.update(url=service_url, api_token=service_token)
    services.append(service)
c.JupyterHub.services = services
c.GPUSliceSpawnerMixin.aistack_api_url = f"{service_url}{hubconfig.SERVICE_PREFIX}api/"
c.GPUSliceSpawnerMixin.aistack_token = service_token
c.Spawner.environment = {"AISTACK_SERVICE_URL": f"{service_url}{hubconfig.SERVICE_PREFIX}"}

# Servers: KubeGPUSpawner pods.
su = chart["singleuser"]
c.KubeSpawner.image = su["image"]
c.KubeSpawner.image_pull_policy = su["imagePullPolicy"]
c.KubeSpawner.uid = su["uid"]
c.KubeSpawner.fs_gid = su["fsGid"]
c.KubeSpawner.namespace = chart["namespace"]
c.KubeSpawner.automount_service_account_token = False
c.KubeSpawner.extra_labels = {"hub.jupyter.org/network-access-hub": "true"}
if su["storage"]["type"] == "dynamic":
    c.KubeSpawner.storage_pvc_ensure = True
    c.KubeSpawner.storage_capacity = su["storage"]["capacity"]
    if su["storage"]["storageClassName"]:
        c.KubeSpawner.storage_class = su["storage"]["storageClassName"]
    c.KubeSpawner.pvc_name_template = "claim-{username}{servername}"
    c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}]
    c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": "/home/jovyan"}]
for trait, (group, key) in {"cpu_guarantee": ("cpu", "guarantee"), "cpu_limit": ("cpu", "limit"),
                            "mem_guarantee": ("memory", "guarantee"), "mem_limit": ("memory", "limit")}.items():
    if su[group][key] is not None:
        setattr(c.KubeSpawner, trait, su[group][key])
c.KubeGPUSpawner.slice_backend = su["sliceBackend"]
c.KubeGPUSpawner.tenant_namespaces = su["namespacePerTenant"]
c.KubeGPUSpawner.create_tenant_namespaces = False  # the chart creates them (and their quotas); the hub may not
# Servers in several namespaces: KubeSpawner's reflectors must watch all of them.
c.KubeSpawner.enable_user_namespaces = su["namespacePerTenant"]
c.KubeGPUSpawner.tenant_namespace_template = chart["tenantNamespaceTemplate"]
if su["profileList"]:
    c.KubeSpawner.profile_list = su["profileList"]

# hub.extraConfig: snippets in key order (z2jh convention).
for name in sorted(chart["extraConfig"]):
    exec(compile(chart["extraConfig"][name], f"hub.extraConfig.{name}", "exec"))
