"""Helpers of the job service tests: notebooks, ports, a real PostgreSQL, the service process."""
from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import nbformat
import requests
import yaml

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PYTHON = sys.executable
SERVICE_TOKEN = "aistack-test-service-token-0123456789"
HUB_AUTH = {"Authorization": f"token {SERVICE_TOKEN}"}  # /health and /metrics need a token
PREFIX = "/services/aistack/"

DEPLOYMENT = {
    "tenants": [
        {"name": "team-a", "admins": ["carol"], "quotas": {"any": {"gpu_milli": 2000, "max_queued_jobs": 400}}},
        {"name": "team-b", "quotas": {"any": {"gpu_milli": 1000, "max_queued_jobs": 10}}},
        {"name": "team-c", "quotas": {"any": {"gpu_milli": 4000}}},
    ],
    "profiles": [
        {"slug": "cpu", "display_name": "CPU", "request": {"kind": "cpu", "cpu_milli": 10, "memory_mib": 10}},
        {"slug": "gpu-1", "display_name": "1 GPU", "request": {"kind": "whole", "gpus": 1}},
        {"slug": "gpu-half", "display_name": "1/2 GPU", "request": {"kind": "share", "gpu_milli": 500, "gpu_mem_mib": 8000}},
        {"slug": "gpu-quarter", "display_name": "1/4 GPU", "request": {"kind": "share", "gpu_milli": 250}},
        {"slug": "gpu-8", "display_name": "8 GPUs", "request": {"kind": "whole", "gpus": 8}},
        {"slug": "team-b-only", "request": {"kind": "cpu", "cpu_milli": 10}, "tenants": ["team-b"]},
    ],
    # No physical GPU exists on the test machine: the inventory is configured (4 A100s), so CUDA_VISIBLE_DEVICES
    # and the MPS limits are set as on a real node, but nothing checks them against a device.
    "inventory": [{"name": "node1", "cpu_milli": 64000, "memory_mib": 262144, "gpus": 4, "gpu_model": "A100-40GB"}],
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_notebook(*sources, params: str | None = None, kernel: str = "python3") -> dict:
    nb = nbformat.v4.new_notebook()
    cells = []
    if params is not None:
        c = nbformat.v4.new_code_cell(params)
        c.metadata["tags"] = ["parameters"]
        cells.append(c)
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells = cells
    nb.metadata["kernelspec"] = {"name": kernel, "language": "python", "display_name": "Python 3"}
    nb.metadata["language_info"] = {"name": "python"}
    return json.loads(nbformat.writes(nb))


def wait_for(predicate, timeout: float, interval: float = 0.2, what: str = "condition"):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# ------------------------------------------------------------------------------------------ PostgreSQL
class PostgresServer:
    """A throwaway PostgreSQL (the Debian package's initdb/pg_ctl) on a loopback port, run as a non-root user."""

    def __init__(self):
        self.bindir = self._bindir()
        self.dir = tempfile.mkdtemp(prefix="aistack-pg-")
        os.chmod(self.dir, 0o755)
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run PostgreSQL as: "
                                   "run scripts/setup.d/30-postgres.sh") from None
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)

    @staticmethod
    def _bindir() -> str:
        found = shutil.which("pg_ctl")
        if found:
            return os.path.dirname(os.path.realpath(found))
        base = "/usr/lib/postgresql"
        if os.path.isdir(base):
            for v in sorted(os.listdir(base), reverse=True):
                if os.path.exists(os.path.join(base, v, "bin", "pg_ctl")):
                    return os.path.join(base, v, "bin")
        raise RuntimeError("PostgreSQL is not installed (no pg_ctl): run scripts/setup.d/30-postgres.sh "
                           "(apt-get install postgresql)")

    def _run(self, *args, **kw):
        cmd = [os.path.join(self.bindir, args[0]), *args[1:]]
        if self.user is not None:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)

    def start(self):
        self._run("initdb", "-D", self.data, "-U", "aistack", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run("pg_ctl", "-D", self.data, "-w", "-t", "60", "-l", os.path.join(self.dir, "log"), "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                  f"-c max_connections=200", "start")
        return self

    def create_db(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "aistack", name)
        return f"postgresql://aistack@127.0.0.1:{self.port}/{name}"

    def stop(self):
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


# -------------------------------------------------------------------------------------- the service
class ServiceProcess:
    """``python -m aistack_hub.service`` in a subprocess (so that tests can SIGKILL it)."""

    def __init__(self, data_dir: str, db_url: str, deployment_path: str, hub_api_url: str | None = None,
                 extra_args=(), port: int | None = None, config: dict | None = None, log_name="service.log"):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}{PREFIX}"
        self.api = self.url + "api/"
        env = dict(os.environ)
        env.update({
            "AISTACK_DB_URL": db_url, "JUPYTERHUB_API_TOKEN": SERVICE_TOKEN,
            "JUPYTERHUB_SERVICE_NAME": "aistack", "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
            "JUPYTERHUB_OAUTH_ACCESS_SCOPES": json.dumps(["access:services!service=aistack"]),
            "JUPYTERHUB_CLIENT_ID": "service-aistack", "PYTHONUNBUFFERED": "1",
        })
        if hub_api_url:
            env["JUPYTERHUB_API_URL"] = hub_api_url
            env["JUPYTERHUB_BASE_URL"] = "/"
        self.env = env
        # The deployment file plus this process's traitlets sections (``config``: {"Controller": {...}}).
        os.makedirs(data_dir, exist_ok=True)
        with open(deployment_path) as f:
            merged = {**yaml.safe_load(f), **(config or {})}
        config_path = os.path.join(data_dir, "service-config.yaml")
        with open(config_path, "w") as f:
            yaml.safe_dump(merged, f)
        self.args = [PYTHON, "-m", "aistack_hub.service", f"--config={config_path}", f"--data-dir={data_dir}",
                     f"--port={self.port}", *extra_args]
        self.log_path = os.path.join(data_dir, log_name)
        self.proc = None

    def start(self, timeout: float = 60):
        os.makedirs(self.data_dir, exist_ok=True)
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args, env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.data_dir)
        log.close()
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the service exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(self.url + "health", timeout=2, headers=HUB_AUTH).ok:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the service did not answer in {timeout}s:\n{self.log_tail()}")

    def health(self) -> dict:
        return requests.get(self.url + "health", timeout=5, headers=HUB_AUTH).json()

    def log_tail(self, n: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def session(self, token: str = SERVICE_TOKEN) -> requests.Session:
        s = requests.Session()
        s.headers["Authorization"] = f"token {token}"
        return s
