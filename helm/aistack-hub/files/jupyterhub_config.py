# jupyterhub_config.py of the aistack-hub chart (mounted from a ConfigMap).
# Settings come from the chart values in /usr/local/etc/jupyterhub/chart/values.yaml (as in
# Zero-to-JupyterHub): this file holds logic, the values hold data. hub.extraConfig runs last.
import os

import yaml

CHART_DIR = "/usr/local/etc/jupyterhub/chart"
with open(os.path.join(CHART_DIR, "values.yaml")) as f:
    chart = yaml.safe_load(f)
names = chart["names"]

c = get_config()  # noqa: F821  (provided by JupyterHub when it loads this file)

# Hub and proxy are separate pods: the hub talks to the proxy's API service.
c.JupyterHub.hub_bind_url = "http://:8081"
c.JupyterHub.hub_connect_url = f"http://{names['hub']}:{chart['hubPort']}"
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = f"http://{names['proxyApi']}:8001"
c.ConfigurableHTTPProxy.auth_token = os.environ["CONFIGPROXY_AUTH_TOKEN"]
c.JupyterHub.cookie_secret_file = ""  # JPY_COOKIE_SECRET from the chart's Secret
c.JupyterHub.db_url = os.environ["AISTACK_HUB_DB_URL"]
c.JupyterHub.cleanup_servers = False  # servers survive a hub restart, as in z2jh

# The aistack service runs in its own Deployment; the hub routes /services/aistack/ to it.
c.JupyterHub.services = [{
    "name": "aistack",
    "url": f"http://{names['aistack']}:{chart['aistackPort']}",
    "api_token": os.environ["AISTACK_SERVICE_API_TOKEN"],
    "oauth_no_confirm": True,
    "display": True,
}]
c.JupyterHub.load_roles = [{
    "name": "aistack-service",
    "services": ["aistack"],
    "scopes": ["read:users", "read:groups", "list:users", "list:groups", "read:servers"],
}]

# Servers: the GPU-slice KubeSpawner (spawner/kube.py).
c.JupyterHub.spawner_class = "spawner.kube.KubeGPUSpawner"
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
for trait, key in (("cpu_guarantee", ("cpu", "guarantee")), ("cpu_limit", ("cpu", "limit")),
                   ("mem_guarantee", ("memory", "guarantee")), ("mem_limit", ("memory", "limit"))):
    value = su[key[0]][key[1]]
    if value is not None:
        setattr(c.KubeSpawner, trait, value)
c.KubeGPUSpawner.slice_backend = su["sliceBackend"]
c.KubeGPUSpawner.tenant_namespaces = su["namespacePerTenant"]
c.KubeGPUSpawner.tenant_namespace_template = chart["tenantNamespaceTemplate"]
if su["profileList"]:
    c.KubeSpawner.profile_list = su["profileList"]

# The deployment config (tenants, quotas, slice catalog) the service also reads.
os.environ.setdefault("AISTACK_CONFIG", "/etc/aistack/aistack.yaml")

# hub.extraConfig: snippets in key order (z2jh convention).
for name in sorted(chart["extraConfig"]):
    exec(compile(chart["extraConfig"][name], f"hub.extraConfig.{name}", "exec"))
