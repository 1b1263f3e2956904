"""The Helm chart helm/aistack-hub: lint, render, server-side validation, install, least privilege.

helm and kubectl are the real CLIs built by tests/k8s/build.sh; validation and `helm install` go to
the real kube-apiserver of the test control plane (kwok runs the pods: no container images exist
here, and no GPU either).
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from aistack_hub.config import load_config
from tests.k8s.controlplane import BinariesMissing, require_binaries

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHART = REPO / "helm" / "aistack-hub"
VALUE_SETS = sorted((HERE / "values").glob("*.yaml"))
IDS = [p.stem for p in VALUE_SETS]


@pytest.fixture(scope="module")
def binaries():
    try:
        return require_binaries("helm", "kubectl")
    except BinariesMissing as e:
        pytest.fail(str(e), pytrace=False)


def run(argv, check=True, **kw):
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=300, **kw)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed ({result.returncode}):\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def render(binaries, values: Path | None = None, *sets: str, namespace="aistack", release="aistack-hub"):
    argv = [binaries["helm"], "template", release, CHART, "--namespace", namespace]
    if values:
        argv += ["-f", values]
    for s in sets:
        argv += ["--set", s]
    return [d for d in yaml.safe_load_all(run(argv).stdout) if d]


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


# -- offline: lint, schema, rendering ------------------------------------------------------

@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_helm_lint_strict(binaries, values):
    out = run([binaries["helm"], "lint", "--strict", CHART, "-f", values]).stdout
    assert "0 chart(s) failed" in out


@pytest.mark.parametrize("sets,message", [
    (["singleuser.sliceBackend=nvlink"], "sliceBackend"),
    (["aistack.db.type=postgres"], "aistack"),
    (["podSecurityContext.runAsNonRoot=false"], "runAsNonRoot"),
    (["containerSecurityContext.allowPrivilegeEscalation=true"], "allowPrivilegeEscalation"),
    (["tenants[0].name=bad name!"], "name"),
    (["hub.unknownKey=1"], "unknownKey"),
    (["hub.cookieSecret=not-hex"], "cookieSecret"),
    (["aistack.replicas=3"], "postgres"),  # SQLite on a PVC is single-writer
    (["config.jupyterhub.bind_url=x"], "jupyterhub"),  # a traitlets section is a class name
    (["scheduler.policy=fgd"], "scheduler"),  # gone: Controller.policy in config
], ids=["backend", "postgres-without-url", "root", "escalation", "tenant-name", "unknown-key", "cookie-not-hex",
         "sqlite-replicas", "config-section-not-a-class", "old-scheduler-section"])
def test_bad_values_are_refused_with_a_message(binaries, sets, message):
    argv = [binaries["helm"], "template", "x", CHART]
    for s in sets:
        argv += ["--set", s]
    result = run(argv, check=False)
    assert result.returncode != 0, result.stdout[:500]
    assert message in result.stderr


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_pods_run_as_non_root_and_only_hub_and_service_get_a_token(binaries, values):
    docs = render(binaries, values)
    deployments = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in by_kind(docs, "Deployment")}
    assert set(deployments) == {"hub", "proxy", "aistack"}
    for component, d in deployments.items():
        spec = d["spec"]["template"]["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True, component
        assert spec["securityContext"]["runAsUser"] > 0
        for c in spec["containers"]:
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
        assert spec["automountServiceAccountToken"] is (component != "proxy"), component
    for sa in by_kind(docs, "ServiceAccount"):
        assert sa["automountServiceAccountToken"] is False


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_rbac_is_namespaced_per_tenant(binaries, values):
    docs = render(binaries, values)
    tenants = (yaml.safe_load(values.read_text()) or {}).get("tenants") or [{"name": "default"}]
    roles = [r for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-aistack")]
    assert len(roles) == len(tenants)
    for role in roles:
        assert role["metadata"]["namespace"] != "aistack"  # never in the release namespace
        rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
        assert rules[(("batch",), ("jobs",))] == {"create", "get", "list", "watch", "delete"}
        assert rules[(("",), ("secrets",))] == {"create"}
        assert rules[(("",), ("persistentvolumeclaims",))] == {"create", "get"}  # tenant storage claims
        assert "*" not in str(role["rules"])
    # Nothing cluster-wide but, with servers in tenant namespaces, the hub's read-only pod/event
    # watch (KubeSpawner's reflectors span namespaces), and the service's read of Nodes (rbac.nodes: which
    # nodes cannot take new work).
    per_tenant = (yaml.safe_load(values.read_text()) or {}).get("singleuser", {}).get("namespacePerTenant", True)
    nodes = ((yaml.safe_load(values.read_text()) or {}).get("rbac") or {}).get("nodes", True)
    expected = [[{"apiGroups": [""], "resources": ["pods", "events"], "verbs": ["list", "watch"]}]] if per_tenant else []
    expected += [[{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list"]}]] if nodes else []
    assert sorted([r["rules"] for r in by_kind(docs, "ClusterRole")], key=str) == sorted(expected, key=str)
    assert len(by_kind(docs, "ClusterRoleBinding")) == len(expected)


def config_file(docs, tmp_path) -> Path:
    """The rendered deployment config file (config.yaml of the -config ConfigMap), written to tmp_path."""
    cm = next(d for d in by_kind(docs, "ConfigMap") if "config.yaml" in d["data"])
    path = tmp_path / "config.yaml"
    path.write_text(cm["data"]["config.yaml"])
    return path


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_config_map_is_a_valid_deployment_config(binaries, values, tmp_path):
    """Every section is a real class and every key one of its traits (as aistack-hub's loader checks),
    and every tenant carries the namespace the chart gives it RBAC, quota and servers in."""
    docs = render(binaries, values)
    sections, deployment = load_config(str(config_file(docs, tmp_path)), check=True)
    given = (yaml.safe_load(values.read_text()) or {}).get("tenants") or [{"name": "default"}]
    assert [t.name for t in deployment.tenants] == [t["name"] for t in given]
    roles = {r["metadata"]["namespace"] for r in by_kind(docs, "Role") if r["metadata"]["name"].endswith("-aistack")}
    assert {t.namespace for t in deployment.tenants} == roles
    for tenant, spec in zip(deployment.tenants, given):
        if spec.get("namespace"):
            assert tenant.namespace == spec["namespace"]
        if spec.get("resourceQuota"):
            quota = next(q for q in by_kind(docs, "ResourceQuota")
                         if q["metadata"]["labels"]["aistack.io/tenant"] == tenant.name)
            assert quota["metadata"]["namespace"] == tenant.namespace
    assert "resourceQuota" not in str(yaml.safe_load(config_file(docs, tmp_path).read_text())["tenants"])
    assert sections.KubeGPUSpawner.create_tenant_namespaces is False  # the chart creates them


def test_generated_secrets_are_what_jupyterhub_accepts(binaries):
    import base64
    import binascii
    secret = by_kind(render(binaries), "Secret")[0]["data"]
    cookie = base64.b64decode(secret["hub.cookie-secret"]).decode()
    assert len(binascii.a2b_hex(cookie)) == 32  # JupyterHub reads JPY_COOKIE_SECRET as hex
    tokens = {k: base64.b64decode(v).decode() for k, v in secret.items()}
    assert len(set(tokens.values())) == len(tokens)  # independent random values
    assert all(len(t) >= 32 for t in tokens.values())


def test_image_registry_moves_every_image_to_that_registry(binaries, tmp_path):
    """`--set image.registry=...` (the images of scripts/images.sh pushed to a registry): every pod's
    image and the images in config.yaml (single-user servers, jobs) come from it; its registry part is
    replaced, the repository path kept."""
    registry = "registry.example.com:5000/team"
    docs = render(binaries, None, f"image.registry={registry}",
                  "aistack.jobs.image=aistack.local/aistack-job:0.1.0-abc",
                  "singleuser.image.name=aistack.local/aistack-job", "singleuser.image.tag=0.1.0-abc")
    images = {c["image"] for d in by_kind(docs, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]}
    assert images == {f"{registry}/aistack/aistack-hub:{yaml.safe_load((CHART / 'Chart.yaml').read_text())['appVersion']}",
                      f"{registry}/jupyterhub/configurable-http-proxy:4.6.3"}, images
    config = yaml.safe_load(config_file(docs, tmp_path).read_text())
    assert config["KubeSpawner"]["image"] == f"{registry}/aistack-job:0.1.0-abc"
    assert config["KubernetesExecutor"]["image"] == f"{registry}/aistack-job:0.1.0-abc"
    # Unset: the names as given.
    docs = render(binaries)
    assert {c["image"].split("/")[0] for d in by_kind(docs, "Deployment")
            for c in d["spec"]["template"]["spec"]["containers"]} == {"ghcr.io", "quay.io"}
    bad = run([binaries["helm"], "template", "x", CHART, "--set", "image.registry=https://reg.example.com"], check=False)
    assert bad.returncode != 0 and "registry" in bad.stderr, bad.stderr


def test_postgres_url_comes_from_a_secret_and_sqlite_from_a_pvc(binaries):
    docs = render(binaries, HERE / "values" / "multi-tenant-postgres.yaml")
    aistack = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-aistack"))
    env = {e["name"]: e for e in aistack["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AISTACK_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "aistack-db", "key": "url"}
    assert not by_kind(docs, "PersistentVolumeClaim")
    docs = render(binaries)
    aistack = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-aistack"))
    env = {e["name"]: e for e in aistack["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["AISTACK_DB_URL"]["value"].startswith("sqlite:////srv/aistack/")
    assert aistack["spec"]["strategy"]["type"] == "Recreate"
    assert len(by_kind(docs, "PersistentVolumeClaim")) == 2  # hub and service databases


# -- against the real API server -----------------------------------------------------------

def _ensure_namespaces(cp, names):
    for name in sorted(names):
        if cp.kubectl("get", "namespace", name, check=False).returncode != 0:
            cp.kubectl("create", "namespace", name)


@pytest.mark.k8s
@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_rendered_manifests_pass_server_side_dry_run(binaries, k8s_control_plane, values):
    cp = k8s_control_plane
    release_ns = f"dry-{values.stem}"[:63]
    docs = render(binaries, values, f"tenantNamespaces.prefix=dry{IDS.index(values.stem)}-", namespace=release_ns)
    namespaces = {release_ns} | {d["metadata"]["name"] for d in by_kind(docs, "Namespace")}
    namespaces |= {d["metadata"]["namespace"] for d in docs if d["metadata"].get("namespace")}
    _ensure_namespaces(cp, namespaces)
    rest = [d for d in docs if d["kind"] != "Namespace"]
    for d in rest:  # what helm install does: the release namespace for objects that name none
        d["metadata"].setdefault("namespace", release_ns)
    out = cp.kubectl("apply", "--dry-run=server", "-f", "-", input=yaml.safe_dump_all(rest))
    assert out.stdout.count("(server dry run)") == len(rest), out.stdout


RELEASE = "aistack-hub"
RELEASE_NS = "aistack-system"
INSTALL_TENANTS = ["team-a", "team-b"]


@pytest.fixture(scope="module")
def installed(binaries, k8s_control_plane, tmp_path_factory):
    """The chart installed (helm install --wait) with two tenants and SQLite on PVCs."""
    cp = k8s_control_plane
    # Two volumes for the SQLite PVCs (no dynamic provisioner here): the binder controller binds them.
    for i in range(2):
        cp.apply({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": f"helm-test-pv-{i}"},
                  "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                           "persistentVolumeReclaimPolicy": "Delete",
                           "hostPath": {"path": f"/tmp/aistack-helm-test-pv-{i}"}}})
    values = tmp_path_factory.mktemp("helm") / "values.yaml"
    values.write_text(yaml.safe_dump({
        "tenantNamespaces": {"create": True, "prefix": "inst-"},
        "tenants": [{"name": t, "quotas": {"any": {"gpu_milli": 2000}}} for t in INSTALL_TENANTS],
    }))
    started = time.monotonic()
    cp.helm("install", RELEASE, str(CHART), "-n", RELEASE_NS, "--create-namespace", "-f", str(values),
            "--wait", "--timeout", "180s")
    yield {"values": values, "install_s": time.monotonic() - started}
    cp.helm("uninstall", RELEASE, "-n", RELEASE_NS, "--wait", "--timeout", "120s", check=False)


def can_i(cp, sa, verb, resource, namespace=None, subresource=None):
    argv = ["auth", "can-i", verb, resource, f"--as=system:serviceaccount:{RELEASE_NS}:{sa}"]
    argv += ["-n", namespace] if namespace else ["--all-namespaces"]
    if subresource:
        argv.append(f"--subresource={subresource}")
    answer = cp.kubectl(*argv, check=False).stdout.strip()
    assert answer in ("yes", "no"), answer
    return answer == "yes"


@pytest.mark.k8s
def test_install_runs_hub_proxy_and_service(k8s_control_plane, installed):
    cp = k8s_control_plane
    deployments = cp.kubectl_json("get", "deployments", "-n", RELEASE_NS)["items"]
    ready = {d["metadata"]["name"]: d["status"].get("readyReplicas", 0) for d in deployments}
    assert ready == {f"{RELEASE}-hub": 1, f"{RELEASE}-proxy": 1, f"{RELEASE}-aistack": 1}
    status = json.loads(cp.helm("status", RELEASE, "-n", RELEASE_NS, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    for tenant in INSTALL_TENANTS:
        ns = cp.kubectl_json("get", "namespace", f"inst-{tenant}")
        assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
        policies = cp.kubectl_json("get", "networkpolicies", "-n", f"inst-{tenant}")["items"]
        assert [p["metadata"]["name"] for p in policies] == [f"{RELEASE}-tenant"]
    pvcs = cp.kubectl_json("get", "pvc", "-n", RELEASE_NS)["items"]
    assert sorted(p["status"]["phase"] for p in pvcs) == ["Bound", "Bound"]


@pytest.mark.k8s
@pytest.mark.parametrize("tenant", INSTALL_TENANTS)
def test_service_account_can_do_its_job_in_each_tenant_namespace(k8s_control_plane, installed, tenant):
    cp, sa, ns = k8s_control_plane, f"{RELEASE}-aistack", f"inst-{tenant}"
    for verb in ("create", "get", "list", "watch", "delete"):
        assert can_i(cp, sa, verb, "jobs.batch", ns), verb
    for verb in ("get", "list", "watch", "delete"):
        assert can_i(cp, sa, verb, "pods", ns), verb
    assert can_i(cp, sa, "get", "pods", ns, subresource="log")
    assert can_i(cp, sa, "list", "events", ns)
    assert can_i(cp, sa, "create", "secrets", ns)  # the per-job token Secret
    assert can_i(cp, sa, "create", "persistentvolumeclaims", ns)  # the tenant's storage claims
    assert can_i(cp, sa, "list", "nodes")  # which nodes can take new work (rbac.nodes), read-only


@pytest.mark.k8s
def test_service_account_can_do_nothing_more(k8s_control_plane, installed):
    cp, sa = k8s_control_plane, f"{RELEASE}-aistack"
    tenant_ns = f"inst-{INSTALL_TENANTS[0]}"
    refused = [
        ("get", "secrets", tenant_ns, None), ("list", "secrets", tenant_ns, None),
        ("list", "secrets", None, None), ("get", "secrets", RELEASE_NS, None),
        ("create", "pods", tenant_ns, None),  # only the Job controller creates job pods
        ("create", "pods", tenant_ns, "exec"), ("update", "jobs.batch", tenant_ns, None),
        ("update", "persistentvolumeclaims", tenant_ns, None), ("delete", "persistentvolumeclaims", tenant_ns, None),
        ("list", "jobs.batch", None, None), ("create", "jobs.batch", RELEASE_NS, None),
        ("create", "jobs.batch", "default", None), ("create", "jobs.batch", "kube-system", None),
        ("list", "pods", "kube-system", None), ("update", "nodes", None, None),
        ("patch", "nodes", None, None), ("delete", "nodes", None, None), ("create", "namespaces", None, None),
        ("delete", "namespaces", None, None), ("create", "rolebindings", tenant_ns, None),
        ("create", "clusterrolebindings", None, None), ("update", "resourcequotas", tenant_ns, None),
        ("update", "configmaps", RELEASE_NS, None), ("impersonate", "serviceaccounts", None, None),
        ("create", "serviceaccounts", tenant_ns, "token"), ("create", "deployments.apps", tenant_ns, None),
    ]
    allowed = [r for r in refused if can_i(cp, sa, r[0], r[1], r[2], r[3])]
    assert allowed == []


@pytest.mark.k8s
def test_hub_service_account_spawns_only_in_tenant_namespaces(k8s_control_plane, installed):
    cp, sa = k8s_control_plane, f"{RELEASE}-hub"
    for tenant in INSTALL_TENANTS:
        ns = f"inst-{tenant}"
        for verb in ("create", "get", "list", "watch", "delete"):
            assert can_i(cp, sa, verb, "pods", ns) and can_i(cp, sa, verb, "persistentvolumeclaims", ns)
        assert can_i(cp, sa, "list", "events", ns)
        assert not can_i(cp, sa, "get", "secrets", ns)
        assert not can_i(cp, sa, "create", "jobs.batch", ns)
    assert not can_i(cp, sa, "create", "pods", RELEASE_NS)
    assert not can_i(cp, sa, "create", "pods", "default")
    assert not can_i(cp, sa, "create", "namespaces", None)
    assert not can_i(cp, sa, "list", "nodes", None)
    assert not can_i(cp, sa, "list", "secrets", None)
    # Read-only watch across namespaces, for KubeSpawner's reflectors (enable_user_namespaces).
    assert can_i(cp, sa, "watch", "pods", None) and can_i(cp, sa, "list", "events", None)
    assert not can_i(cp, sa, "get", "pods", "kube-system")
    # The proxy has no service account token at all.
    proxy = cp.kubectl_json("get", "pods", "-n", RELEASE_NS, "-l", "app.kubernetes.io/component=proxy")["items"][0]
    assert proxy["spec"]["automountServiceAccountToken"] is False
    assert not any(v.get("projected") for v in proxy["spec"].get("volumes", []))


@pytest.mark.k8s
def test_upgrade_keeps_generated_secrets(k8s_control_plane, installed):
    cp = k8s_control_plane
    before = cp.kubectl_json("get", "secret", f"{RELEASE}-secret", "-n", RELEASE_NS)["data"]
    cp.helm("upgrade", RELEASE, str(CHART), "-n", RELEASE_NS, "-f", str(installed["values"]),
            "--set", "config.Controller.preemption=true", "--wait", "--timeout", "180s")
    after = cp.kubectl_json("get", "secret", f"{RELEASE}-secret", "-n", RELEASE_NS)["data"]
    assert after == before
    cm = cp.kubectl_json("get", "configmap", f"{RELEASE}-config", "-n", RELEASE_NS)
    assert yaml.safe_load(cm["data"]["config.yaml"])["Controller"]["preemption"] is True


LOAD_CONFIG = r"""
import json, sys
from traitlets.config.loader import PyFileConfigLoader
cfg = PyFileConfigLoader(sys.argv[1]).load_config()
print(json.dumps({section: {k: repr(v) for k, v in cfg[section].items()} for section in cfg}))
"""


def _load_hub_config(path: Path, env: dict) -> dict:
    """The rendered jupyterhub_config.py loaded as JupyterHub loads it, in a fresh interpreter."""
    import os
    import sys
    result = run([sys.executable, "-c", LOAD_CONFIG, path], env={**os.environ, **env}, cwd=REPO)
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_hub_config_is_the_products_configure_on_the_config_file(binaries, values, tmp_path):
    """The rendered jupyterhub_config.py only runs aistack_hub.hubconfig.configure() on the rendered config
    file (no chart logic in Python): an external service, no proxy to start, KubeGPUSpawner pods."""
    docs = render(binaries, values)
    config = config_file(docs, tmp_path)
    data = yaml.safe_load(config.read_text())
    data["AIStackHub"]["data_dir"] = str(tmp_path / "data")  # /srv/jupyterhub in the pod
    config.write_text(yaml.safe_dump(data))
    cm = next(d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].endswith("-hub"))
    hub_py = cm["data"]["jupyterhub_config.py"]
    assert hub_py.count("/etc/aistack/config.yaml") == 1 and "import yaml" not in hub_py
    (tmp_path / "jupyterhub_config.py").write_text(hub_py.replace("/etc/aistack/config.yaml", str(config)))
    loaded = _load_hub_config(tmp_path / "jupyterhub_config.py", {
        "AISTACK_SERVICE_TOKEN": "t1" * 16, "CONFIGPROXY_AUTH_TOKEN": "t2",
        "AISTACK_HUB_DB_URL": "sqlite:///" + str(tmp_path / "hub.sqlite"),
    })
    assert loaded["JupyterHub"]["spawner_class"] == repr("spawner.kube.KubeGPUSpawner")
    assert "'url': 'http://aistack-hub-aistack:10101'" in loaded["JupyterHub"]["services"]
    assert "command" not in loaded["JupyterHub"]["services"]  # external service, not hub-managed
    assert loaded["ConfigurableHTTPProxy"]["should_start"] == "False"
    assert "command" not in loaded["ConfigurableHTTPProxy"]
    assert loaded["GPUSliceSpawnerMixin"]["aistack_token"] == repr("t1" * 16)
    assert loaded["JupyterHub"]["db_url"] == repr("sqlite:///" + str(tmp_path / "hub.sqlite"))
    hub_env = {e["name"] for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-hub")
               for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {"AISTACK_SERVICE_TOKEN", "AISTACK_HUB_DB_URL"} <= hub_env


@pytest.mark.parametrize("values", VALUE_SETS, ids=IDS)
def test_service_loads_the_same_file_and_runs_kubernetes_jobs(binaries, values, tmp_path):
    from aistack_hub.config import apply_config_file
    from aistack_hub.service import AIStackService
    from job_runner.executors.kubernetes import KubernetesExecutor

    docs = render(binaries, values)
    deployment = next(d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-aistack"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    argv = container["command"]
    assert argv == ["python", "-m", "aistack_hub.service", "--config=/etc/aistack/config.yaml"]
    assert not any(e["name"] in ("AISTACK_CONFIG", "AISTACK_DATA_DIR") for e in container["env"])
    app = AIStackService()
    app.parse_command_line([f"--config={config_file(docs, tmp_path)}"])
    apply_config_file(app, app.config_file)
    assert app.executor_class == "job_runner.executors.kubernetes.KubernetesExecutor"
    assert app.ip == "0.0.0.0" and app.data_dir == "/srv/aistack" and app.validate_kernels is False
    executor = KubernetesExecutor(parent=app)
    assert executor.create_namespaces is False
    assert executor.service_url == "http://aistack-hub-aistack.aistack.svc:10101/services/aistack/api/"
