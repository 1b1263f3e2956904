"""The job pod's entry point (``python -m job_runner.pod``) against the real ``aistack`` service.

Kubernetes is not needed to test what runs *inside* the pod: the entry point runs here as a process with
the environment the KubernetesExecutor gives it (service URL, job id, attempt, per-job token). It fetches
the job from the real service (python -m aistack_hub.service, its pod endpoints, its SQLite database),
runs a real notebook with papermill through job_runner.run_notebook, streams logs/progress, uploads the
output and reports the result. The service's executor is the NoopExecutor with a long duration, so the
job stays "running" while the pod talks to it (in a cluster, KubernetesExecutor holds it running).
"""
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from job_runner.pod import EXIT_CODES, TOKEN_HEADER, job_token
from tests.k8s_workloads.service_proc import ROOT, aistack_service


def _notebook(*sources) -> str:
    cells = [{"cell_type": "code", "metadata": {"tags": ["parameters"]} if i == 0 else {}, "source": src,
              "outputs": [], "execution_count": None, "id": f"c{i}"} for i, src in enumerate(sources)]
    return json.dumps({"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}},
                       "nbformat": 4, "nbformat_minor": 5})


@pytest.fixture
def service(tmp_path):
    """A real aistack service (its own process) with a tenant and a CPU profile."""
    with aistack_service(tmp_path, {
        "tenants": [{"name": "team-a"}],
        "profiles": [{"slug": "cpu", "display_name": "CPU",
                      "request": {"kind": "cpu", "cpu_milli": 500, "memory_mib": 512}}],
        "inventory": [{"name": "node1", "cpu_milli": 8000, "memory_mib": 16384}],
    }) as svc:
        yield svc


def _running_job(service, notebook: str, parameters: dict) -> tuple[int, int]:
    """A job row as POST jobs writes it; the service's loop admits and 'runs' it (NoopExecutor)."""
    from job_runner.db import Job, open_database

    db = open_database(service["db"])
    with db.session() as s:
        row = Job(name="pod-test", user="alice", tenant="team-a", profile="cpu", notebook=notebook,
                  parameters=parameters, kernel_name="python3",
                  request={"kind": "cpu", "cpu_milli": 500, "memory_mib": 512})
        s.add(row)
        s.flush()
        job_id = row.id
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with db.session() as s:
            row = s.get(Job, job_id)
            if row.state == "running":
                attempt = row.attempt
                break
        time.sleep(0.2)
    else:
        pytest.fail(f"job {job_id} never ran: {row.state}")
    db.engine.dispose()
    return job_id, attempt


def _run_pod(service, job_id, attempt, tmp_path, token=None):
    secret = (service["data"] / "job-token-secret").read_text().strip()
    env = {**os.environ, "PYTHONPATH": ROOT, "AISTACK_SERVICE_URL": service["api"], "AISTACK_JOB_ID": str(job_id),
           "AISTACK_JOB_ATTEMPT": str(attempt), "AISTACK_JOB_TOKEN": token or job_token(secret, job_id, attempt),
           "AISTACK_WORK_DIR": str(tmp_path / "work"), "AISTACK_REPORT_INTERVAL": "0.5",
           "AISTACK_TERMINATION_LOG": str(tmp_path / "termination-log")}
    return subprocess.run([sys.executable, "-m", "job_runner.pod"], env=env, capture_output=True, text=True,
                          timeout=180, cwd=ROOT)


def test_pod_runs_the_notebook_and_reports_to_the_service(service, tmp_path):
    nb = _notebook("greeting = 'hello'", "print(greeting * 2)")
    job_id, attempt = _running_job(service, nb, {"greeting": "bonjour"})
    proc = _run_pod(service, job_id, attempt, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    attempt_dir = service["data"] / "jobs" / str(job_id) / f"attempt-{attempt}"
    assert json.loads((attempt_dir / "result.json").read_text()) == {"state": "succeeded"}
    out = json.loads((attempt_dir / "output.ipynb").read_text())
    texts = [o.get("text", "") for c in out["cells"] for o in c.get("outputs", [])]
    printed = "".join("".join(t) if isinstance(t, list) else t for t in texts)
    assert "bonjourbonjour" in printed  # the submitted parameter, injected by papermill
    progress = json.loads((attempt_dir / "progress.json").read_text())
    assert progress["cells_total"] >= 2
    assert "bonjourbonjour" in (service["data"] / "jobs" / str(job_id) / "job.log").read_text()


def test_failing_cell_exits_with_its_code_and_reports_the_cell(service, tmp_path):
    nb = _notebook("x = 1", "raise ValueError('bad input')")
    job_id, attempt = _running_job(service, nb, {})
    proc = _run_pod(service, job_id, attempt, tmp_path)
    assert proc.returncode == EXIT_CODES["cell_error"], proc.stdout + proc.stderr
    result = json.loads((service["data"] / "jobs" / str(job_id) / f"attempt-{attempt}" / "result.json").read_text())
    assert result["failure"]["class"] == "cell_error" and result["failure"]["ename"] == "ValueError"
    # The same failure in the container's termination message, for the executor to read from pod status.
    assert json.loads((tmp_path / "termination-log").read_text())["ename"] == "ValueError"


def test_a_wrong_token_gets_nothing(service, tmp_path):
    job_id, attempt = _running_job(service, _notebook("x = 1"), {})
    req = urllib.request.Request(f"{service['api']}jobs/{job_id}/pod/input",
                                 headers={TOKEN_HEADER: job_token("not-the-secret", job_id, attempt)})
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=5)
    assert e.value.code == 403
    proc = _run_pod(service, job_id, attempt, tmp_path, token="forged")
    assert proc.returncode == EXIT_CODES["infrastructure"]
