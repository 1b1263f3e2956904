# Traitlets config of the aistack service in the aistack-hub chart (mounted from a ConfigMap):
# notebook jobs run as batch/v1 Jobs in the tenants' namespaces. Chart settings are in
# /etc/aistack/chart.yaml ($AISTACK_CHART_VALUES); aistack.extraConfig snippets run last.
import os

import yaml

with open(os.environ.get("AISTACK_CHART_VALUES", "/etc/aistack/chart.yaml")) as f:
    chart = yaml.safe_load(f)

c = get_config()  # noqa: F821  (provided by the traitlets Application)

c.AIStackService.ip = "0.0.0.0"
c.AIStackService.port = chart["port"]
c.AIStackService.executor_class = chart["executorClass"]
# Shared by every replica (pods authenticate with tokens derived from it).
c.AIStackService.job_token_secret = os.environ["AISTACK_JOB_TOKEN_SECRET"]
c.AIStackService.validate_kernels = False  # kernels live in the job image, not in this pod

c.KubernetesExecutor.namespace_template = chart["tenantNamespaceTemplate"]
c.KubernetesExecutor.create_namespaces = False  # the chart creates them; the service may not
c.KubernetesExecutor.image = chart["jobImage"]
c.KubernetesExecutor.service_url = chart["serviceUrl"]
c.KubernetesExecutor.ttl_seconds_after_finished = chart["ttlSecondsAfterFinished"]
c.SliceRenderer.backend = chart["sliceBackend"]

for name in sorted(chart["extraConfig"]):
    exec(compile(chart["extraConfig"][name], f"aistack.extraConfig.{name}", "exec"))
