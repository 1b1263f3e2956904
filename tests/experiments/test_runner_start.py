"""The runner starts the notebook's kernel before it imports papermill, and papermill runs the notebook on
*that* kernel (issue 13: the kernel's start overlaps papermill's import; docs/experiments.md, "Where a
trial's slot time goes").

Real parts: ``python -m job_runner.run_notebook`` (the attempt runner the executors use) with papermill and a
real Python kernel. The kernel the runner recorded in runner.json right after starting it must be the process
that ran the cells (were a second kernel started by nbclient, its pid would differ), in the notebook's
folder, with the job's parameters; it must be gone when the runner has exited (nbclient shut it down as its
own); a kernel name that does not exist fails the attempt with the name in its message, as before.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import nbformat

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def attempt_dir(tmp_path, kernel: str = "python3", spec_kernel: str | None = None):
    attempt = tmp_path / "attempt-1"
    attempt.mkdir()
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("scale = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(
        "import os\nprint('kernel pid', os.getpid(), 'cwd', os.getcwd(), 'scale', scale)")]
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(attempt / "input.ipynb"))
    home = tmp_path / "home"
    (home / "project").mkdir(parents=True)
    (attempt / "spec.json").write_text(json.dumps({"parameters": {"scale": 7}, "kernel_name": spec_kernel,
                                                   "home": str(home), "workdir": "project",
                                                   "output_link": "jobs/1/output"}))
    return attempt, home / "project"


def run(attempt):
    return subprocess.run([sys.executable, "-m", "job_runner.run_notebook", str(attempt)], cwd=REPO,
                          capture_output=True, text=True, timeout=180)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_early_kernel_runs_the_notebook_and_is_shut_down(tmp_path):
    attempt, folder = attempt_dir(tmp_path)
    out = run(attempt)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert json.loads((attempt / "result.json").read_text()) == {"state": "succeeded"}
    log = out.stdout
    # started before papermill's import, not after it
    assert log.index("startup: kernel process started") < log.index("startup: papermill imported"), log[:3000]
    kernels = json.loads((attempt / "runner.json").read_text())["kernels"]
    assert len(kernels) == 1, kernels
    output = json.loads((attempt / "output.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in output["cells"] for o in c.get("outputs", []))
    assert f"kernel pid {kernels[0]['pid']} cwd {folder} scale 7" in text, text
    assert not alive(kernels[0]["pid"]), "the kernel outlived its runner"
    assert "end: notebook ended, kernel shut down" in log and "end: last cell done" in log, log[-3000:]
    # the runner skips the interpreter's teardown (os._exit) only after its log is flushed: its last line is there
    assert log.rstrip().splitlines()[-1].split(" INFO ", 1)[-1].startswith("end: result written, runner exits"), log[-1000:]


def test_an_unknown_kernel_fails_the_attempt_naming_it(tmp_path):
    attempt, _ = attempt_dir(tmp_path, spec_kernel="no-such-kernel-13")
    out = run(attempt)
    assert out.returncode == 1, out.stdout[-3000:] + out.stderr[-3000:]
    fail = json.loads((attempt / "result.json").read_text())["failure"]
    assert "no-such-kernel-13" in fail["message"], fail
    assert json.loads((attempt / "runner.json").read_text())["kernels"] == []


STALLS = """
import atexit, os, time
atexit.register(time.sleep, 30)  # the kernel's exit stalls: the runner's graceful shutdown waits on it
with open(os.environ["AISTACK_STOP_FILE"], "w") as f:
    f.write("pruned by the experiment's rule at step 1")
from job_runner import report
report(step=1, accuracy=0.5)  # the marker exists: raises TrialStopped before recording
"""


def test_a_trial_stopped_at_its_marker_keeps_that_outcome_when_sigtermed_while_its_kernel_shuts_down(tmp_path):
    """The cancel that follows a prune after stop_grace_s can reach a trial that already ended itself at
    the marker but whose kernel is slow to exit: the job is recorded as pruned (the marker's reason), not as
    "stopped by SIGTERM"."""
    import signal

    attempt, _ = attempt_dir(tmp_path)
    nb = nbformat.read(str(attempt / "input.ipynb"), as_version=4)
    nb.cells[1].source = STALLS
    nbformat.write(nb, str(attempt / "input.ipynb"))
    p = subprocess.Popen([sys.executable, "-m", "job_runner.run_notebook", str(attempt)], cwd=REPO,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    log = []
    try:
        for line in p.stdout:  # the runner's own log: SIGTERM once the cells are over
            log.append(line)
            if "end: last cell done" in line:
                p.send_signal(signal.SIGTERM)
                break
        log += p.stdout.readlines()
        assert p.wait(timeout=60) == 143, "".join(log)[-3000:]
    finally:
        p.kill()
        for k in json.loads((attempt / "runner.json").read_text())["kernels"]:
            try:
                os.killpg(k["pgid"], signal.SIGKILL)  # what the executor's cleanup does with a kernel left over
            except ProcessLookupError:
                pass
    fail = json.loads((attempt / "result.json").read_text())["failure"]
    assert fail == {"class": "cancelled", "message": "pruned by the experiment's rule at step 1",
                    "stopped_itself": True}, fail
    text = "".join(log)
    assert "stopped itself at the experiment's stop marker" in text and "SIGTERM while its kernel shut down" in text, text[-3000:]
    assert not (attempt / "metrics.jsonl").exists() or "accuracy" not in (attempt / "metrics.jsonl").read_text()
