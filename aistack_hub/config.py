"""The deployment config file (YAML): traitlets sections, and the data that seeds the database.

One file configures the whole deployment; the hub (``aistack_hub.hubconfig.configure``) and the service
(``python -m aistack_hub.service --config=FILE``) both read it. Example::

    # traitlets sections: a class name, then its traits, spelled exactly as the class spells them
    Authenticator:
      admin_users: [alice]
    JupyterHub:
      named_server_limit_per_user: 3
      load_groups: {team-a: {users: [alice]}}   # tenants are JupyterHub groups
    GPUSliceSpawnerMixin:
      wait_for_gpu: true
    Controller:
      policy: default        # the scheduler's placement policy
      preemption: false

    # data: seeds the database (the admin page and API change it there later; the database then wins)
    tenants:
      - name: team-a
        weight: 2
        admins: [alice]
        quotas: {any: {gpu_milli: 2000, max_running_jobs: 4, max_queued_jobs: 200}}
        windows: ["sat-sun 0-24"]
        idle_timeout_s: 3600
    profiles:
      - slug: a100-half
        display_name: Half an A100
        request: {kind: share, gpu_milli: 500, gpu_mem_mib: 20000, cpu_milli: 4000, memory_mib: 16000}
    inventory:
      - {name: node1, cpu_milli: 64000, memory_mib: 262144, gpus: 4, gpu_model: A100-40GB}

A key that starts with a capital letter is a traitlets section (``c.ClassName.trait = value``); each process
applies the sections of the classes it has and ignores the others. ``check_sections`` refuses a class that
does not exist and a key that is not a configurable trait of it, so a typo fails at start-up, not silently.
The data sections are loaded into the scheduling core's types (``Tenant``, ``ProfileCatalog``, ``Inventory``).
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from importlib import import_module

import yaml
from traitlets.config import Config

from job_runner.scheduling import Inventory, ProfileCatalog, Tenant

DATA_SECTIONS = ("tenants", "profiles", "inventory")

# Where the configurable classes of a deployment live (name -> module). A section whose class is not listed
# is looked up among the Configurable subclasses of every module here (slower, for classes added later).
KNOWN_CLASSES = {
    "JupyterHub": "jupyterhub.app",
    "Authenticator": "jupyterhub.auth",
    "DummyAuthenticator": "jupyterhub.auth",
    "NativeAuthenticator": "nativeauthenticator",
    "LDAPAuthenticator": "ldapauthenticator",
    "AIStackLDAPAuthenticator": "aistack_hub.ldap",
    "Spawner": "jupyterhub.spawner",
    "LocalProcessSpawner": "jupyterhub.spawner",
    "SimpleLocalProcessSpawner": "jupyterhub.spawner",
    "Proxy": "jupyterhub.proxy",
    "ConfigurableHTTPProxy": "jupyterhub.proxy",
    "KubeSpawner": "kubespawner",
    "GPUSliceSpawnerMixin": "spawner.mixin",
    "LocalGPUSpawner": "spawner.local",
    "KubeGPUSpawner": "spawner.kube",
    "SliceRenderer": "job_runner.binding.kube",
    "Isolation": "job_runner.binding.accounts",
    # --- storage + environments (issue 15 C) ---
    "TenantStorage": "job_runner.binding.storage",
    "KubeStorage": "job_runner.binding.storage_kube",
    # --- end storage + environments ---
    "AIStackHub": "aistack_hub.hubconfig",
    "AIStackService": "aistack_hub.service",
    "Controller": "job_runner.controller",
    "JobRetention": "job_runner.controller.retention",
    "Limits": "aistack_hub.services.limits",
    # --- pipelines + schedules (issue 14) ---
    "PipelineSettings": "aistack_hub.services.pipelines",
    "ScheduleSettings": "aistack_hub.services.schedules",
    # --- end pipelines + schedules ---
    "ExperimentSettings": "aistack_hub.services.experiment_settings",  # --- experiments (issue 13) ---
    "Application": "traitlets.config",
    "LocalExecutor": "job_runner.executors.local",
    "KubernetesExecutor": "job_runner.executors.kubernetes",
    "NoopExecutor": "job_runner.executors.noop",
    "Monitor": "job_runner.monitoring.monitor",  # --- GPU monitoring + culling (issue 15 B) ---
}


class ConfigError(ValueError):
    """The deployment config is invalid (the message says where)."""


@dataclass
class DeploymentConfig:
    """The data sections: tenants (seed of the database), the profile catalog, the GPU inventory."""

    tenants: list = field(default_factory=list)  # [Tenant]
    profiles: ProfileCatalog = field(default_factory=lambda: ProfileCatalog([]))
    inventory: Inventory = field(default_factory=lambda: Inventory([]))
    inventory_source: str = "configured"

    @classmethod
    def from_dict(cls, data: dict | None) -> "DeploymentConfig":
        """From the data sections (traitlets sections, capitalised keys, are skipped: see ``split``)."""
        _, data = split(data)
        try:
            tenants = [Tenant.from_config(t) for t in data.get("tenants") or []]
        except (TypeError, ValueError) as e:
            raise ConfigError(f"tenants: {e}") from e
        names = [t.name for t in tenants]
        if len(set(names)) != len(names):
            raise ConfigError("tenants: duplicate names")
        try:
            profiles = ProfileCatalog.from_config(data.get("profiles") or [])
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"profiles: {e}") from e
        try:
            inventory = Inventory.from_config(data.get("inventory") or [])
        except (TypeError, ValueError, KeyError) as e:
            raise ConfigError(f"inventory: {e}") from e
        return cls(tenants=tenants, profiles=profiles, inventory=inventory)

    def tenant(self, name: str):
        for t in self.tenants:
            if t.name == name:
                return t
        return None


def read_file(path: str) -> dict:
    """The raw YAML mapping of a config file (ConfigError naming the file when it is not one)."""
    if not os.path.exists(path):
        raise ConfigError(f"deployment config {path} does not exist")
    with open(path) as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the deployment config must be a mapping")
    return data


def split(data: dict | None) -> tuple[Config, dict]:
    """(traitlets sections, data sections) of a raw config mapping; ConfigError on an unknown lower-case key."""
    data = data or {}
    if not isinstance(data, dict):
        raise ConfigError("the deployment config must be a mapping")
    sections = {k: v for k, v in data.items() if isinstance(k, str) and k[:1].isupper()}
    rest = {k: v for k, v in data.items() if k not in sections}
    unknown = set(rest) - set(DATA_SECTIONS)
    if unknown:
        raise ConfigError(f"unknown top-level keys: {sorted(map(str, unknown))} (data sections: "
                          f"{', '.join(DATA_SECTIONS)}; traitlets sections are class names, e.g. JupyterHub)")
    for name, values in sections.items():
        if not isinstance(values, dict):
            raise ConfigError(f"{name}: a traitlets section must be a mapping of trait names to values")
    return Config(sections), rest


def find_class(name: str):
    """The Configurable class a section names (None if there is none)."""
    from traitlets.config import Configurable

    if name in KNOWN_CLASSES:
        klass = getattr(import_module(KNOWN_CLASSES[name]), name, None)
        if klass is not None:
            return klass

    def loaded():
        seen, todo = set(), [Configurable]
        while todo:
            klass = todo.pop()
            if klass.__name__ == name:
                return klass
            for sub in klass.__subclasses__():
                if sub not in seen:
                    seen.add(sub)
                    todo.append(sub)
        return None

    found = loaded()
    if found is not None:
        return found
    for module in sorted(set(KNOWN_CLASSES.values())):
        try:
            import_module(module)
        except ImportError:  # an optional backend (kubespawner) that is not installed
            continue
    return loaded()


def _import_named_classes(sections: Config) -> None:
    """Import the modules of classes the file names (``authenticator_class: ldapauthenticator.LDAPAuthenticator``),
    so that their sections (``LDAPAuthenticator:``) are found like ours."""
    for values in sections.values():
        for key, value in values.items():
            if key.endswith("_class") and isinstance(value, str) and "." in value:
                try:
                    import_module(value.rsplit(".", 1)[0])
                except ImportError:
                    pass  # the section check (or the hub itself) says what is missing


def _type_problem(trait, value) -> str:
    """Why ``value`` is not a valid value of ``trait`` ('' if it is), as traitlets would say at start-up."""
    from traitlets import HasTraits, TraitError

    try:
        trait.validate(HasTraits(), value)
    except TraitError as e:
        return str(e).replace("'HasTraits' object", "the").replace("of a HasTraits instance ", "")
    except Exception:  # noqa: BLE001 - a validator that needs its real owner: traitlets checks it at start-up
        return ""
    return ""


def check_sections(sections: Config, where: str = "the deployment config") -> None:
    """Every section is a configurable class and every key one of its config traits, else ConfigError."""
    _import_named_classes(sections)
    for name, values in sections.items():
        try:
            klass = find_class(name)
        except ImportError as e:
            raise ConfigError(f"{where}: section {name}: {e}") from e
        if klass is None:
            near = difflib.get_close_matches(name, KNOWN_CLASSES, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise ConfigError(f"{where}: {name} is not a configurable class{hint}")
        traits = klass.class_traits(config=True)
        for key, value in values.items():
            if key not in traits:
                near = difflib.get_close_matches(key, traits, n=1)
                hint = f" (did you mean {near[0]}?)" if near else ""
                raise ConfigError(f"{where}: {name}.{key} is not a configurable trait of {name}{hint}")
            problem = _type_problem(traits[key], value)
            if problem:
                raise ConfigError(f"{where}: {name}.{key}: {problem}")


def load_config(path: str | None, check: bool = False) -> tuple[Config, DeploymentConfig]:
    """(traitlets sections, data) of a config file; no path: nothing configured. ``check``: refuse unknown
    classes and traits (the hub does, before anything starts; the service relies on traitlets' warnings so
    that it need not import the hub's classes)."""
    if not path:
        return Config(), DeploymentConfig()
    data = read_file(path)
    sections, _ = split(data)
    if check:
        check_sections(sections, path)
    try:
        return sections, DeploymentConfig.from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from e


def apply_config_file(app, path: str | None) -> DeploymentConfig:
    """Load ``path`` into a traitlets Application: its sections, then the command line again (flags win)."""
    sections, deployment = load_config(path)
    app.update_config(sections)
    cli = getattr(app, "cli_config", None)
    if cli:
        app.update_config(cli)
    return deployment


def main(argv: list[str] | None = None) -> int:
    """``python -m aistack_hub.config --check FILE`` / ``python -m aistack_hub.config CLASS ...`` (its traits)."""
    import argparse
    import sys

    p = argparse.ArgumentParser(prog="python -m aistack_hub.config",
                                description="Check a deployment config file, or list the traits of classes.")
    p.add_argument("--check", metavar="FILE", help="check FILE as aistack-hub up does (exit 2 with the message)")
    p.add_argument("classes", nargs="*", help="class names (e.g. GPUSliceSpawnerMixin Controller): their traits")
    args = p.parse_args(argv)
    if args.check:
        try:
            load_config(args.check, check=True)
        except ConfigError as e:
            print(e, file=sys.stderr)
            return 2
        print(f"{args.check}: ok")
    for name in args.classes:
        klass = find_class(name)
        if klass is None:
            print(f"{name} is not a configurable class", file=sys.stderr)
            return 2
        print(klass.class_get_help())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
