"""The configuration story: one YAML file of traitlets sections (class name -> its traits) and data sections,
read by the hub (hubconfig.configure) and the service (--config). No hub is started here."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml
from traitlets.config import Config

from aistack_hub.config import (
    KNOWN_CLASSES,
    ConfigError,
    check_sections,
    find_class,
    load_config,
    read_file,
    split,
)
from aistack_hub.hubconfig import DEFAULT_CONFIG, SERVICE_NAME, configure

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Every YAML file the product ships that is a deployment config.
PACKAGED = [DEFAULT_CONFIG]


def config_file(tmp_path, data: dict) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def overrides(tmp_path, **hub) -> Config:
    o = Config()
    o.AIStackHub.data_dir = str(tmp_path / "d")
    for key, value in hub.items():
        setattr(o.AIStackHub, key, value)
    return o


@pytest.mark.parametrize("path", PACKAGED, ids=os.path.basename)
def test_every_key_of_the_packaged_config_is_a_real_trait(path):
    sections, data = split(read_file(path))
    assert sections, "the packaged config sets traits"
    for name, values in sections.items():
        klass = find_class(name)
        assert klass is not None, f"{name} is not a class"
        traits = klass.class_traits(config=True)
        for key in values:
            assert key in traits, f"{name}.{key} is not a configurable trait of {klass.__module__}.{name}"
            assert traits[key].help, f"{name}.{key} has no help text"
    check_sections(sections, path)  # the same check, as aistack-hub up runs it
    load_config(path, check=True)  # and the data sections load into the core's types


def test_known_classes_are_where_the_table_says():
    for name, module in KNOWN_CLASSES.items():
        klass = find_class(name)
        assert klass is not None and klass.__name__ == name and klass.__module__.startswith(module), name


@pytest.mark.parametrize("data,message", [
    ({"JupyterHub": {"named_server_limit_per_usr": 3}}, "did you mean named_server_limit_per_user"),
    ({"GPUSliceSpawnerMixin": {"wait_for_gpus": True}}, "did you mean wait_for_gpu"),
    ({"JupyterHubb": {"bind_url": "x"}}, "JupyterHubb is not a configurable class (did you mean JupyterHub?)"),
    ({"Authenticator": ["admin"]}, "must be a mapping"),
    ({"JupyterHub": {"named_server_limit_per_user": "three"}}, "expected an int"),
    ({"GPUSliceSpawnerMixin": {"wait_for_gpu": "sometimes"}}, "expected a boolean"),
    ({"hub": {"admin_users": ["x"]}}, "unknown top-level keys: ['hub']"),
    ({"scheduler": {"policy": "fgd"}}, "unknown top-level keys: ['scheduler']"),
    ({"tenants": [{"name": "a", "colour": "blue"}]}, "unknown fields ['colour']"),
])
def test_a_typo_is_refused_with_a_hint(tmp_path, data, message):
    with pytest.raises(ConfigError) as e:
        load_config(config_file(tmp_path, data), check=True)
    assert message in str(e.value)


def test_hubconfig(tmp_path, monkeypatch):
    monkeypatch.setenv("AISTACK_ADMIN_TOKEN", "adm1n-token")
    c = Config()
    o = overrides(tmp_path, service_port=18125)
    o.JupyterHub.bind_url = "http://127.0.0.1:18123"
    facts = configure(c, None, o)
    assert facts["url"] == "http://127.0.0.1:18123/" and facts["inventory_source"] == "configured"
    assert c.JupyterHub.authenticator_class == "aistack_hub.admin.hubside.AIStackNativeAuthenticator"
    assert c.NativeAuthenticator.open_signup is False
    # every tenant is a group; the file's load_groups seeds members
    assert c.JupyterHub.load_groups == {"team-a": {"users": ["admin"]}, "team-b": {"users": []}}
    svc = {s["name"]: s for s in c.JupyterHub.services}
    assert svc[SERVICE_NAME]["command"][2:] == ["aistack_hub.service",
                                                f"--config={tmp_path / 'd' / 'aistack-service.yaml'}",
                                                f"--data-dir={tmp_path / 'd'}"]
    assert svc[SERVICE_NAME]["url"] == "http://127.0.0.1:18125"
    assert svc["aistack-automation"]["api_token"] == "adm1n-token"
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["admin"]["services"] == ["aistack-automation"]
    assert f"access:services!service={SERVICE_NAME}" in roles["user"]["scopes"]
    assert c.GPUSliceSpawnerMixin.aistack_token == svc[SERVICE_NAME]["api_token"]
    assert c.GPUSliceSpawnerMixin.wait_for_gpu is True  # the packaged file's section, as it is
    assert "tenant_idle_timeouts" not in c.GPUSliceSpawnerMixin  # the spawner reads them live
    # the service reads the same file, with the (configured) inventory and where it came from
    svc_cfg = read_file(str(tmp_path / "d" / "aistack-service.yaml"))
    assert svc_cfg["inventory"][0]["name"] == "example-node"
    assert svc_cfg["AIStackService"] == {"inventory_source": "configured"}
    assert svc_cfg["GPUSliceSpawnerMixin"] == read_file(DEFAULT_CONFIG)["GPUSliceSpawnerMixin"]
    # the service token is stable across restarts
    again = configure(Config(), None, overrides(tmp_path))
    assert again["service_token"] == facts["service_token"]


def test_the_file_wins_over_defaults_and_the_command_line_over_the_file(tmp_path):
    path = config_file(tmp_path, {
        "JupyterHub": {"bind_url": "http://127.0.0.1:19000", "named_server_limit_per_user": 7,
                       "template_vars": {"announcement": "maintenance at 18:00"},
                       "services": [{"name": "tester", "api_token": "t" * 32}]},
        "NativeAuthenticator": {"open_signup": True},
        "Spawner": {"environment": {"FOO": "bar"}},
        "tenants": [{"name": "a"}],
    })
    c = Config()
    facts = configure(c, path, overrides(tmp_path))
    assert facts["url"] == "http://127.0.0.1:19000/"
    assert c.JupyterHub.named_server_limit_per_user == 7 and c.NativeAuthenticator.open_signup is True
    # lists and dicts combine: the file's entries are added to ours
    assert {s["name"] for s in c.JupyterHub.services} == {SERVICE_NAME, "tester"}
    assert c.JupyterHub.template_vars["announcement"] == "maintenance at 18:00"
    assert "aistack_show_admin" in c.JupyterHub.template_vars
    assert c.Spawner.environment["FOO"] == "bar" and "AISTACK_SERVICE_URL" in c.Spawner.environment
    o = overrides(tmp_path)
    o.JupyterHub.bind_url = "http://127.0.0.1:19001"
    assert configure(Config(), path, o)["url"] == "http://127.0.0.1:19001/"


def test_an_external_service_is_not_started_by_the_hub(tmp_path, monkeypatch):
    """The Kubernetes shape: the service is its own Deployment, the proxy its own pod, the token a Secret."""
    monkeypatch.setenv("AISTACK_SERVICE_TOKEN", "s" * 64)
    monkeypatch.setenv("AISTACK_HUB_DB_URL", "postgresql://hub:pw@db/hub")
    path = config_file(tmp_path, {
        "AIStackHub": {"service_url": "http://aistack:10101/", "data_dir": str(tmp_path / "d")},
        "ConfigurableHTTPProxy": {"should_start": False, "api_url": "http://proxy-api:8001"},
        "JupyterHub": {"spawner_class": "spawner.kube.KubeGPUSpawner"},
        "tenants": [{"name": "a"}],
    })
    c = Config()
    facts = configure(c, path)
    svc = {s["name"]: s for s in c.JupyterHub.services}[SERVICE_NAME]
    assert svc["url"] == "http://aistack:10101" and "command" not in svc and svc["api_token"] == "s" * 64
    assert c.GPUSliceSpawnerMixin.aistack_api_url == "http://aistack:10101/services/aistack/api/"
    assert c.JupyterHub.db_url == "postgresql://hub:pw@db/hub"
    assert "command" not in c.ConfigurableHTTPProxy  # no proxy executable needed in the hub's image
    assert not os.path.exists(tmp_path / "d" / "aistack-service.yaml")
    assert facts["service_token"] == "s" * 64


def test_up_refuses_a_bad_config_clearly(tmp_path):
    bad = config_file(tmp_path, {"JupyterHub": {"colour": "blue"}})
    out = subprocess.run([sys.executable, "-m", "aistack_hub.app", "up", "--config", bad, "--data-dir",
                          str(tmp_path / "d")], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2, out.stderr
    assert "JupyterHub.colour is not a configurable trait of JupyterHub" in out.stderr


def test_the_config_command_checks_files_and_lists_traits(tmp_path):
    bad = config_file(tmp_path, {"Controller": {"tick_interval": 1}})
    out = subprocess.run([sys.executable, "-m", "aistack_hub.config", "--check", bad], capture_output=True,
                         text=True, timeout=60, cwd=REPO)
    assert out.returncode == 2 and "did you mean tick_interval_s?" in out.stderr, out.stderr
    out = subprocess.run([sys.executable, "-m", "aistack_hub.config", "AIStackHub"], capture_output=True,
                         text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0 and "--AIStackHub.service_url" in out.stdout and "$AISTACK_SERVICE_TOKEN" in out.stdout


def test_the_service_applies_its_sections_and_flags_win(tmp_path):
    from aistack_hub.service import AIStackService

    path = config_file(tmp_path, {"AIStackService": {"max_body_bytes": 1234, "ip": "127.0.0.2"},
                                  "JupyterHub": {"bind_url": "ignored by the service"},
                                  "tenants": [{"name": "a"}]})
    app = AIStackService()
    app.parse_command_line([f"--config={path}", "--ip=127.0.0.3"])
    from aistack_hub.config import apply_config_file

    deployment = apply_config_file(app, app.config_file)
    assert app.max_body_bytes == 1234 and app.ip == "127.0.0.3"
    assert [t.name for t in deployment.tenants] == ["a"]
