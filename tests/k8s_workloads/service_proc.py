"""Start the real ``aistack`` service (``python -m aistack_hub.service``) as a process for a test."""
import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HUB_TOKEN = "hub-token-for-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def aistack_service(tmp_path, deployment: dict, *args: str):
    """The service on a loopback port with ``deployment`` (tenants, profiles, inventory), the NoopExecutor
    holding jobs 'running' for an hour, and ``HUB_TOKEN`` as the hub's token. Yields a dict with
    ``api`` (URL), ``data`` (its data dir), ``db`` (URL), ``proc``; fails with the service's log."""
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(deployment))
    port = _free_port()
    data = tmp_path / "data"
    env = {**os.environ, "JUPYTERHUB_API_TOKEN": HUB_TOKEN, "PYTHONPATH": ROOT}
    env.pop("JUPYTERHUB_API_URL", None)
    log = tmp_path / "service.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "aistack_hub.service", f"--config={tmp_path / 'deploy.yaml'}",
         f"--data-dir={data}", f"--port={port}", "--executor=job_runner.executors.noop.NoopExecutor",
         "--NoopExecutor.duration_s=3600", "--AIStackService.validate_kernels=False", *args],
        env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}/services/aistack/"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(base + "health", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("the aistack service did not start:\n" + log.read_text()[-3000:])
            time.sleep(0.2)
    try:
        yield {"api": base + "api/", "data": data, "db": f"sqlite:///{data / 'aistack.sqlite'}", "proc": proc,
               "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
