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


def test_a_pod_learns_its_trial_was_pruned_from_the_services_answer_and_ends_itself(service, tmp_path):
    """Closes (issue 13): a trial in a pod never saw the stop marker (there is no run folder of it beside the
    service), so a pruned pod trial was cancelled (SIGTERM: its last epoch lost, recorded "cancelled by
    request"). Now the service puts the marker in its run-file store, as ``marker.write_stop`` does for an
    executor without a run folder; the pod's next report is answered with it, the pod writes it where the
    runner's ``report()`` looks, and the trial ends itself: the pod's own outcome is the marker's."""
    from job_runner.db import open_database
    from job_runner.db.experiments import JobMetric
    from job_runner.executors.runfiles import FileRunFiles
    from job_runner.experiments import marker

    nb = _notebook("steps = 300", "import time\nfrom job_runner import report\nfor step in range(1, steps + 1):\n"
                   "    time.sleep(0.1)\n    report(step=step, accuracy=step / steps)\nprint('ran to the end')")
    job_id, attempt = _running_job(service, nb, {})
    secret = (service["data"] / "job-token-secret").read_text().strip()
    env = {**os.environ, "PYTHONPATH": ROOT, "AISTACK_SERVICE_URL": service["api"], "AISTACK_JOB_ID": str(job_id),
           "AISTACK_JOB_ATTEMPT": str(attempt), "AISTACK_JOB_TOKEN": job_token(secret, job_id, attempt),
           "AISTACK_WORK_DIR": str(tmp_path / "work"), "AISTACK_REPORT_INTERVAL": "0.5",
           "AISTACK_TERMINATION_LOG": str(tmp_path / "termination-log")}
    env.pop("AISTACK_STOP_FILE", None)
    proc = subprocess.Popen([sys.executable, "-m", "job_runner.pod"], env=env, cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        db = open_database(service["db"])
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:  # its first points reached the service
            with db.read() as s:
                if s.query(JobMetric).filter(JobMetric.job_id == job_id).count():
                    break
            time.sleep(0.2)
        else:
            pytest.fail(f"no metrics from the pod: {proc.poll()} {proc.stdout.read() if proc.poll() else ''}")
        db.engine.dispose()
        why = "pruned by the experiment's rule at step 2"
        pod_view = type("PodExecutor", (), {})()  # an executor without a run folder here, as the Kubernetes one
        assert marker.write_stop(pod_view, job_id, attempt, why, FileRunFiles(str(service["data"] / "jobs"))) == "store"
        out, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == EXIT_CODES["cancelled"], out[-3000:]
    assert "the service asked this trial to stop: " + why in out, out[-3000:]
    assert "stopped itself at the experiment's stop marker" in out and "ran to the end" not in out, out[-3000:]
    result = json.loads((service["data"] / "jobs" / str(job_id) / f"attempt-{attempt}" / "result.json").read_text())
    assert result == {"state": "failed", "failure": {"class": "cancelled", "message": why, "stopped_itself": True}}
    assert json.loads((tmp_path / "termination-log").read_text())["message"] == why
