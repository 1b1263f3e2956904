"""The entry point of a notebook job's pod: ``python -m job_runner.pod``.

Run by the ``KubernetesExecutor`` in a ``batch/v1`` Job. It fetches the job's input from the ``aistack``
service with a per-job token, runs it with the job service's own runner (``python -m
job_runner.run_notebook``, papermill), streams logs and per-cell progress back while it runs, uploads the
output notebook after each change and at the end, reports the result, and exits with a code that tells
the Job's pod failure policy what happened (see ``EXIT_CODES``).

Environment (set by the executor): ``AISTACK_SERVICE_URL`` (the service's API base URL, ending in
``/api/``), ``AISTACK_JOB_ID``, ``AISTACK_JOB_ATTEMPT``, ``AISTACK_JOB_TOKEN`` (from a Secret),
optionally ``AISTACK_WORK_DIR``, ``AISTACK_REPORT_INTERVAL`` and ``AISTACK_TERMINATION_LOG``.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from job_runner.failures import CANCELLED, CELL_ERROR, INFRASTRUCTURE, KERNEL_DIED, TIMEOUT, failure
from job_runner.run_notebook import read_json as _read_json

log = logging.getLogger("job_runner.pod")

TOKEN_HEADER = "X-Aistack-Job-Token"

# Exit code of the pod per failure class: the Job's podFailurePolicy retries by these.
EXIT_CODES = {None: 0, INFRASTRUCTURE: 1, CELL_ERROR: 3, KERNEL_DIED: 4, TIMEOUT: 5, CANCELLED: 143}
# The container itself killed by the kernel's OOM killer shows as 137 (SIGKILL).
OOM_EXIT_CODE = 137


def job_token(secret: str | bytes, job_id, attempt) -> str:
    """The token of one attempt of one job: HMAC-SHA256 of ``"<job_id>:<attempt>"`` with ``secret``."""
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, f"{job_id}:{attempt}".encode(), hashlib.sha256).hexdigest()


def check_job_token(secret: str | bytes, job_id, attempt, token: str | None) -> bool:
    """True when ``token`` is the token of this job attempt (constant-time comparison)."""
    if not token or not secret:
        return False
    return hmac.compare_digest(job_token(secret, job_id, attempt), str(token))


class ServiceChannel:
    """The pod's side of the ``jobs/{id}/pod/...`` endpoints, retrying through service restarts."""

    def __init__(self, base_url: str, job_id, token: str, retry_for_s: float = 120.0):
        import requests

        self.base = base_url.rstrip("/") + f"/jobs/{job_id}/pod/"
        self.session = requests.Session()
        self.session.headers[TOKEN_HEADER] = token
        self.retry_for_s = retry_for_s

    def _call(self, method: str, path: str, retry_for_s: float | None = None, **kwargs):
        import requests

        deadline = time.monotonic() + (self.retry_for_s if retry_for_s is None else retry_for_s)
        delay = 0.5
        while True:
            try:
                r = self.session.request(method, self.base + path, timeout=30, **kwargs)
                if r.status_code < 500:
                    r.raise_for_status()  # 4xx: our token or request is wrong; no retry helps
                    return r
                err = f"{r.status_code} {r.text[:200]}"
            except requests.ConnectionError as e:
                err = str(e)
            if time.monotonic() > deadline:
                raise RuntimeError(f"{method} {path}: service unreachable: {err}")
            # The service may be restarting (it re-adopts this Job): keep the run going and retry.
            time.sleep(delay)
            delay = min(delay * 2, 10)

    def get_input(self) -> dict:
        return self._call("GET", "input").json()

    def put_output(self, notebook_json: str, retry_for_s: float | None = None):
        self._call("PUT", "output", retry_for_s, data=notebook_json.encode(),
                   headers={"Content-Type": "application/json"})

    def post_progress(self, progress: dict | None, log_text: str, retry_for_s: float | None = None):
        body = {"log": log_text}
        if progress:
            body["cell"] = progress.get("current_cell")
            body["total"] = progress.get("cells_total")
            body["done"] = progress.get("cells_done")
        return _answer(self._call("POST", "progress", retry_for_s, json=body))

    # --- experiments (issue 13): report()'s lines (the run folder's metrics.jsonl), sent as they come
    def post_metrics(self, lines: bytes, attempt: int, retry_for_s: float | None = None):
        return _answer(self._call("POST", "metrics", retry_for_s, data=lines,
                                  headers={"Content-Type": "application/x-ndjson",
                                           "X-Aistack-Attempt": str(int(attempt))}))

    def post_result(self, ok: bool, fail: dict | None):
        self._call("POST", "result", json={"ok": ok, "failure": fail})


def _answer(r) -> dict:
    """The service's JSON answer to a report (``{"ok": true}``, ``"stop"`` for a stopped trial), {} if none."""
    try:
        got = r.json()
    except ValueError:
        return {}
    return got if isinstance(got, dict) else {}


class _LogPump(threading.Thread):
    """Copies the runner's output to our stdout (``kubectl logs``) and buffers it for the service."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream = stream
        self.lock = threading.Lock()
        self.buffer: list[str] = []

    def run(self):
        for line in self.stream:
            sys.stdout.write(line)
            sys.stdout.flush()
            with self.lock:
                self.buffer.append(line)

    def take(self) -> str:
        with self.lock:
            text, self.buffer = "".join(self.buffer), []
        return text

    def give_back(self, text: str):
        """Text that could not be sent goes first next time."""
        if text:
            with self.lock:
                self.buffer.insert(0, text)


class PodRun:
    """One attempt: prepare the attempt directory, run the runner, report until it ends."""

    def __init__(self, channel: ServiceChannel, work_dir: str, attempt: int, interval_s: float = 2.0):
        self.channel = channel
        self.work_dir = work_dir
        self.attempt = attempt
        self.interval_s = interval_s
        self.proc: subprocess.Popen | None = None
        self._stopping = False
        self._output_mtime = None
        self._metrics_offset = 0  # experiments (issue 13): bytes of metrics.jsonl sent so far
        self._stop_written = False  # experiments (issue 13): the service's stop marker is in the run folder

    def prepare(self, spec: dict) -> str:
        attempt_dir = os.path.join(self.work_dir, f"attempt-{self.attempt}")
        os.makedirs(attempt_dir, exist_ok=True)
        notebook = spec["notebook"]
        with open(os.path.join(attempt_dir, "input.ipynb"), "w") as f:
            f.write(notebook if isinstance(notebook, str) else json.dumps(notebook))
        runner_spec = {k: spec.get(k) for k in ("parameters", "kernel_name", "cell_timeout", "output_link")}
        with open(os.path.join(attempt_dir, "spec.json"), "w") as f:
            json.dump(runner_spec, f)
        return attempt_dir

    def _report(self, attempt_dir: str, pump: _LogPump, final: bool = False):
        """Send new log text, progress and (if it changed) the output notebook. While the notebook runs
        a failed report is tried again at the next interval (never failing the run); the final one
        retries for a while, through a restart of the service."""
        retry = None if final else 0
        self._send_metrics(attempt_dir, retry)  # experiments (issue 13)
        text = pump.take()
        try:
            self._take_stop(attempt_dir, self.channel.post_progress(
                _read_json(os.path.join(attempt_dir, "progress.json")), text, retry))
        except Exception as e:  # noqa: BLE001
            pump.give_back(text)
            log.warning("could not report progress: %s", e)
            if not final:
                return
        try:
            out = os.path.join(attempt_dir, "output.ipynb")
            mtime = os.path.getmtime(out) if os.path.exists(out) else None
            if mtime and mtime != self._output_mtime:
                with open(out) as f:
                    self.channel.put_output(f.read(), retry)
                self._output_mtime = mtime
        except Exception as e:  # noqa: BLE001
            log.warning("could not upload the output: %s", e)

    # --- experiments (issue 13): new whole lines of metrics.jsonl to the service (never failing the run)
    def _send_metrics(self, attempt_dir: str, retry) -> None:
        try:
            with open(os.path.join(attempt_dir, "metrics.jsonl"), "rb") as f:
                f.seek(self._metrics_offset)
                data = f.read(4 << 20)
        except OSError:
            return
        end = data.rfind(b"\n")
        if end < 0:
            return
        try:
            answer = self.channel.post_metrics(data[:end + 1], self.attempt, retry)
            self._metrics_offset += end + 1
        except Exception as e:  # noqa: BLE001 - sent again at the next report
            log.warning("could not send metrics: %s", e)
            return
        self._take_stop(attempt_dir, answer)

    def _take_stop(self, attempt_dir: str, answer) -> None:
        """The service's stop marker of this attempt (a pruned / stopped trial), written where the runner's
        report() looks for it (AISTACK_STOP_FILE; run_notebook's default, the attempt folder's ``stop``):
        the trial ends itself at its next report(), its output and checkpoint whole."""
        why = answer.get("stop") if isinstance(answer, dict) else None
        if not why or self._stop_written:
            return
        path = os.environ.get("AISTACK_STOP_FILE") or os.path.join(attempt_dir, "stop")
        try:
            with open(path, "x") as f:
                f.write(str(why)[:200])
        except FileExistsError:
            pass
        except OSError as e:
            log.warning("could not write the stop marker: %s", e)
            return
        self._stop_written = True
        log.info("the service asked this trial to stop: %s", why)

    def stop(self, *_):
        """SIGTERM from Kubernetes (Job deleted = cancelled): pass it on to the runner."""
        self._stopping = True
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()

    def run(self, spec: dict) -> tuple[bool, dict | None]:
        attempt_dir = self.prepare(spec)
        # The pod's own environment (the executor's, and the device plugin's) is the run's.
        child_env = dict(os.environ)
        child_env.pop("AISTACK_JOB_TOKEN", None)  # the notebook has no business with our token
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "job_runner.run_notebook", attempt_dir],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env,
        )
        pump = _LogPump(self.proc.stdout)
        pump.start()
        timeout_s = spec.get("timeout_s")
        started = time.monotonic()
        timed_out = False
        while self.proc.poll() is None:
            try:
                self.proc.wait(timeout=self.interval_s)
            except subprocess.TimeoutExpired:
                pass
            if timeout_s and not timed_out and time.monotonic() - started > float(timeout_s):
                timed_out = True
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
            self._report(attempt_dir, pump)
        pump.join(timeout=5)
        self._report(attempt_dir, pump, final=True)

        result = _read_json(os.path.join(attempt_dir, "result.json")) or {}
        if timed_out:
            return False, failure(TIMEOUT, f"the job ran past its timeout of {float(timeout_s):g} s")
        if self._stopping:
            return False, failure(CANCELLED, "the job's pod was stopped")
        if result.get("state") == "succeeded" and self.proc.returncode == 0:
            return True, None
        fail = result.get("failure") or failure(
            INFRASTRUCTURE, f"the notebook runner exited with code {self.proc.returncode} without a result")
        return False, fail


def _write_termination_message(fail: dict, path: str = "/dev/termination-log"):
    """The failure as JSON in the container's termination message (the executor reads it from the
    pod's status, so the reason survives even when the service could not be told)."""
    try:
        with open(path, "w") as f:
            f.write(json.dumps(fail)[:4000])  # Kubernetes keeps at most 4096 bytes
    except OSError:
        pass


def main(argv=None) -> int:
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s pod %(levelname)s %(message)s")
    env = os.environ
    missing = [k for k in ("AISTACK_SERVICE_URL", "AISTACK_JOB_ID", "AISTACK_JOB_TOKEN") if not env.get(k)]
    if missing:
        log.error("missing environment: %s", ", ".join(missing))
        return EXIT_CODES[INFRASTRUCTURE]
    attempt = int(env.get("AISTACK_JOB_ATTEMPT", "1"))
    channel = ServiceChannel(env["AISTACK_SERVICE_URL"], env["AISTACK_JOB_ID"], env["AISTACK_JOB_TOKEN"])
    run = PodRun(channel, env.get("AISTACK_WORK_DIR", "/tmp/aistack-job"), attempt,
                 float(env.get("AISTACK_REPORT_INTERVAL", "2")))
    signal.signal(signal.SIGTERM, run.stop)
    try:
        spec = channel.get_input()
        ok, fail = run.run(spec)
    except Exception as e:  # noqa: BLE001 - anything here is the platform's fault, not the notebook's
        log.exception("job pod failed")
        ok, fail = False, failure(INFRASTRUCTURE, f"job pod: {type(e).__name__}: {e}"[:500])
    if fail:
        _write_termination_message(fail, env.get("AISTACK_TERMINATION_LOG", "/dev/termination-log"))
    try:
        channel.post_result(ok, fail)
    except Exception as e:  # noqa: BLE001 - the exit code still tells the executor the outcome
        log.error("could not report the result: %s", e)
    return EXIT_CODES.get(fail and fail.get("class"), EXIT_CODES[INFRASTRUCTURE])


if __name__ == "__main__":
    sys.exit(main())
