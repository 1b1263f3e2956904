"""The ``aistack-hub`` command.

    aistack-hub up [--config FILE] [--port 8000] [--ip 127.0.0.1] [--data-dir .aistack] ...
        start the whole embedded deployment: JupyterHub + configurable-http-proxy + the aistack service
        (hub-managed), SQLite in the data folder; prints the URL and how to create the first admin.
        The flags override the config file's traits (``JupyterHub.bind_url``, ``AIStackHub.data_dir``, ...).
    aistack-hub token USER [--data-dir ...]
        print a new API token for USER (like ``jupyterhub token``; the user must have logged in once).

``AISTACK_ADMIN_TOKEN`` in the environment of ``up`` is accepted as an admin API token (automation).

Before anything starts, ``up`` makes the data folder the platform's alone: mode 0700, its files 0600 and
owned by this account, and a umask of 077 for everything the hub, the proxy and the service write there
(cookie secret, service token, job-token secret, databases). It checks the isolation the config asks for
(``job_runner.binding.accounts.Isolation``): ``accounts`` without root is a start-up error; ``single-user``
is said in the log and in the banner (docs/security.md).
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from traitlets.config import Config

from job_runner.binding.accounts import Isolation, IsolationError

from .config import ConfigError, read_file, split
from .hubconfig import DEFAULT_CONFIG, configure, free_port, reconcile_allocations

CONFIG_FILE = "jupyterhub_config.py"

_CONFIG_TEMPLATE = '''# Written by `aistack-hub up`; rewritten on every start. For your own setup, copy it and edit.
from traitlets.config import Config

from aistack_hub.hubconfig import configure

# The command line of `aistack-hub up` (it wins over the config file).
overrides = Config({overrides!r})
configure(c, {config_path!r}, overrides)
'''


def overrides_of(args, sections: Config) -> Config:
    """The traits ``up``'s flags set; internal ports the file leaves open get free loopback ports."""
    o = Config()
    if args.ip is not None or args.port is not None:
        o.JupyterHub.bind_url = f"http://{args.ip or '127.0.0.1'}:{args.port or 8000}"
    hub = sections["JupyterHub"] if "JupyterHub" in sections else {}
    if args.hub_port or "hub_bind_url" not in hub:
        o.JupyterHub.hub_bind_url = f"http://127.0.0.1:{args.hub_port or free_port()}"
    if "api_url" not in (sections["ConfigurableHTTPProxy"] if "ConfigurableHTTPProxy" in sections else {}):
        o.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{free_port()}"
    aistack = sections["AIStackHub"] if "AIStackHub" in sections else {}
    if args.service_port or "service_port" not in aistack:
        o.AIStackHub.service_port = args.service_port or free_port()
    if args.data_dir or "data_dir" not in aistack:
        o.AIStackHub.data_dir = os.path.abspath(args.data_dir or ".aistack")
    return o


def secure_data_dir(data_dir: str) -> None:
    """The data folder and what is in it are the platform's alone (0700; files 0600, owned by us)."""
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    os.chmod(data_dir, 0o700)
    me, gid = os.geteuid(), os.getegid()
    for name in os.listdir(data_dir):
        path = os.path.join(data_dir, name)
        st = os.lstat(path)
        if os.path.islink(path):
            continue
        if me == 0 and st.st_uid != 0:
            os.chown(path, me, gid)
        want = 0o700 if os.path.isdir(path) else 0o600
        if st.st_mode & 0o7777 != want:
            os.chmod(path, want)


def isolation_of(sections: Config, data_dir: str) -> Isolation:
    """The isolation the config asks for, checked (IsolationError says what is wrong and what to do)."""
    iso = Isolation(config=sections)
    iso.check()
    iso.check_home_root(data_dir)
    return iso


def write_hub_config(args) -> tuple[str, dict]:
    config_path = os.path.abspath(args.config) if args.config else DEFAULT_CONFIG
    sections, _ = split(read_file(config_path))
    overrides = overrides_of(args, sections)
    sections.merge(overrides)
    os.umask(0o077)  # what the hub, the proxy and the service create in the data folder is ours alone
    secure_data_dir(sections.AIStackHub.data_dir if "data_dir" in sections.AIStackHub
                    else os.path.abspath(".aistack"))
    # Validate and learn the facts (URL, inventory) before starting anything.
    facts = configure(Config(), config_path, overrides)
    facts["isolation"] = isolation_of(sections, facts["data_dir"]).describe()
    path = os.path.join(facts["data_dir"], CONFIG_FILE)
    plain = {name: dict(values) for name, values in overrides.items()}
    with open(path, "w") as f:
        f.write(_CONFIG_TEMPLATE.format(overrides=plain, config_path=config_path))
    secure_data_dir(facts["data_dir"])
    return path, facts


def wait_until_up(facts: dict, proc: subprocess.Popen, seen: list[str] | None = None, timeout: float = 180) -> bool:
    """Until JupyterHub says it is running (its API answers and, when its output is seen, it logged "is now
    running": asking the proxy earlier only fills the proxy's log with errors), then once through the proxy."""
    deadline = time.monotonic() + timeout
    for url in (facts["hub_api"], facts["url"] + "hub/api/"):
        while url != facts["hub_api"] and seen is not None and not any("is now running" in x for x in seen):
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.3)
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                return False
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
    return True


def banner(facts: dict) -> str:
    admins = ", ".join(facts["admin_users"]) or "(none configured: set Authenticator.admin_users)"
    gpu = (f"{facts['gpus']} GPU(s) found by NVML" if facts["inventory_source"] == "nvml" else
           f"no GPU found by NVML: the configured example inventory ({facts['gpus']} GPUs) stands in")
    first = facts["admin_users"][0] if facts["admin_users"] else "admin"
    return "\n".join([
        "",
        "AIStack Hub is up:",
        f"  URL:        {facts['url']}",
        f"  first admin: open {facts['url']}hub/signup and sign up as '{first}' (admin users: {admins});",
        f"               then approve other users at {facts['url']}hub/authorize",
        f"  GPU admin:  {facts['url']}services/aistack/admin/",
        f"  tenants:    {', '.join(facts['tenants']) or '(none)'}",
        f"  GPUs:       {gpu}",
        f"  data:       {facts['data_dir']}",
        f"  isolation:  {facts.get('isolation', '')}",
        "  API token:  aistack-hub token USER",
        "",
    ])


def cmd_up(args) -> int:
    try:
        path, facts = write_hub_config(args)
    except (ConfigError, ValueError, OSError, RuntimeError, IsolationError) as e:
        print(f"aistack-hub: cannot start: {e}", file=sys.stderr)
        return 2
    if facts["isolation"].startswith("single-user"):
        print(f"aistack-hub: WARNING: {facts['isolation']}", file=sys.stderr, flush=True)
    else:
        print(f"aistack-hub: isolation: {facts['isolation']}", flush=True)
    cmd = [sys.executable, "-m", "jupyterhub", "-f", path]
    if args.debug:
        cmd.append("--debug")
    current: dict = {}

    def forward(signum, _frame):
        current["stopping"] = True
        proc = current.get("proc")
        if proc is not None and proc.poll() is None:
            proc.send_signal(signum)

    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGTERM, forward)
    for attempt in range(1, START_ATTEMPTS + 1):
        proc, seen, copier = start_teed(cmd, facts["data_dir"])
        current["proc"] = proc
        if wait_until_up(facts, proc, seen):
            try:
                reconcile_allocations(facts["api_url"], facts["service_token"],
                                      log=lambda m: print(f"aistack-hub: {m}", flush=True))
            except (OSError, ValueError) as e:  # never keep the hub from running for this
                print(f"aistack-hub: could not reconcile allocations: {e}", file=sys.stderr, flush=True)
            print(banner(facts), flush=True)
            return proc.wait()
        code = proc.wait() if proc.poll() is not None else None
        copier.join(5)
        if code is None:
            print(f"aistack-hub: the hub did not answer at {facts['url']} yet; see its log above", file=sys.stderr)
            return proc.wait()
        # JupyterHub gives a managed service ~10 s to answer; a cold or very busy machine can need more for
        # the service's first start. Its second start is faster (files cached), so try again.
        if current.get("stopping") or attempt == START_ATTEMPTS or not any(SERVICE_SLOW in line for line in seen):
            return code
        print(f"aistack-hub: the aistack service was slow to start (attempt {attempt}); starting again",
              file=sys.stderr, flush=True)
    return 1


START_ATTEMPTS = 3
SERVICE_SLOW = "Cannot connect to aistack service"


def start_teed(cmd: list[str], cwd: str):
    """Start JupyterHub with its output copied to ours, remembering its first lines (startup errors)."""
    import threading

    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            errors="replace", bufsize=1)
    seen: list[str] = []

    def copy():
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if len(seen) < 2000:
                seen.append(line)

    copier = threading.Thread(target=copy, daemon=True)
    copier.start()
    return proc, seen, copier


def cmd_token(args) -> int:
    path = os.path.join(os.path.abspath(args.data_dir), CONFIG_FILE)
    if not os.path.exists(path):
        print(f"aistack-hub: {path} not found: run `aistack-hub up --data-dir {args.data_dir}` first",
              file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "jupyterhub", "token", f"--config={path}", "--log-level=ERROR", args.user]
    return subprocess.call(cmd, cwd=os.path.dirname(path))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aistack-hub", description="AIStack Hub: a multi-tenant GPU JupyterHub")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start the embedded deployment on this machine")
    up.add_argument("--config", help="the deployment config (YAML: traitlets sections, tenants, profiles, "
                                     "inventory; docs/hub.md); default: the packaged example")
    up.add_argument("--port", type=int, help="public port of the proxy (default 8000; JupyterHub.bind_url)")
    up.add_argument("--ip", help="address to listen on (default 127.0.0.1; 0.0.0.0 for other machines)")
    up.add_argument("--data-dir", help="state folder (default ./.aistack; AIStackHub.data_dir)")
    up.add_argument("--hub-port", type=int, default=0, help="internal hub API port (default: a free one)")
    up.add_argument("--service-port", type=int, default=0, help="aistack service port (default: a free one)")
    up.add_argument("--debug", action="store_true", help="JupyterHub debug logging")
    up.set_defaults(func=cmd_up)
    tok = sub.add_parser("token", help="print a new API token for a user")
    tok.add_argument("user")
    tok.add_argument("--data-dir", default=os.path.abspath(".aistack"), help="the data folder of `up`")
    tok.set_defaults(func=cmd_token)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
