"""``report()``: record metrics of the running job from its notebook (issue 13, docs/experiments.md).

    from job_runner import report
    report(step=3, accuracy=0.91, loss=0.2)

Each call appends one JSON line ``{"step": 3, "t": <epoch s>, "m": {"accuracy": 0.91, "loss": 0.2}}`` to an
in-memory batch; the batch goes to the run folder's metrics file (``AISTACK_METRICS_FILE``, set by the
runner: ``metrics.jsonl`` of the attempt's folder) when it is ``flush_every_s`` old or ``flush_lines`` long,
and at the latest ``flush_every_s`` later from a daemon thread (so the last epoch's line reaches the service
while the notebook computes the next one). Nothing here talks to the network, waits on the service or holds a
credential: a local job's file is read by the service (it survives the service being away), a pod's runner
(``job_runner.pod``) sends new lines with its progress reports. Outside a job (no ``AISTACK_METRICS_FILE``)
the points are kept in memory only (``points()``), so a notebook runs unchanged in JupyterLab.

Stopping (like Optuna's ``trial.should_prune()``): when the experiment prunes this trial (or a person stops
it), the service writes a stop marker into the run folder (``AISTACK_STOP_FILE``). ``report()`` looks for it
(one ``stat()``, at most every ``check_every_s``) and raises :class:`TrialStopped` *before* recording the new
point, so the epoch loop ends at the rung and the last checkpoint matches the last recorded step; the runner
records the job as stopped (failure class "cancelled"), its output, metrics and checkpoint stay.
``should_stop()`` asks the same question without raising (to save something first, then ``break``).
"""
from __future__ import annotations

import atexit
import json
import math
import os
import threading
import time

ENV = "AISTACK_METRICS_FILE"
STOP_ENV = "AISTACK_STOP_FILE"
MAX_NAME = 64
MAX_METRICS_PER_CALL = 64


class TrialStopped(Exception):
    """Raised by ``report()`` when the experiment stopped this trial (pruned by its rule, or by a person)."""

    def _render_traceback_(self):  # IPython shows this line instead of a traceback
        return [f"TrialStopped: {self}"]


class Reporter:
    def __init__(self, path: str | None, flush_every_s: float = 0.05, flush_lines: int = 256,
                 max_buffered: int = 100_000, stop_path: str | None = None, check_every_s: float = 0.02,
                 raise_on_stop: bool = True):
        self.path = path
        self.stop_path = stop_path
        self.check_every_s = check_every_s
        self.raise_on_stop = raise_on_stop
        self._checked = 0.0
        self._stopped: str | None = None
        self.flush_every_s = flush_every_s
        self.flush_lines = flush_lines
        self.max_buffered = max_buffered
        self._buf: list[str] = []
        self._lock = threading.Lock()
        self._last_flush = time.monotonic()
        self._step = 0
        self._memory: list[dict] = []
        self._timer: threading.Thread | None = None
        self._wake = threading.Event()
        self.dropped = 0

    def should_stop(self, now: float | None = None) -> bool:
        """True once the stop marker exists (a ``stat()`` at most every ``check_every_s``; then remembered)."""
        if self._stopped is not None:
            return True
        if self.stop_path is None:
            return False
        now = time.monotonic() if now is None else now
        if now - self._checked < self.check_every_s:
            return False
        self._checked = now
        try:
            os.stat(self.stop_path)
        except OSError:
            return False
        try:
            with open(self.stop_path) as f:
                self._stopped = f.read(200).strip() or "stopped by the experiment"
        except OSError:
            self._stopped = "stopped by the experiment"
        return True

    def report(self, step=None, **metrics) -> None:
        if self.raise_on_stop and self.should_stop():
            self.flush()
            raise TrialStopped(f"{self._stopped} (before step {step if step is not None else self._step + 1}; "
                               "the last recorded step is the last one)")
        if step is None:
            step = self._step + 1
        try:
            step = int(step)
        except (TypeError, ValueError):
            raise ValueError(f"report(): step must be an integer, not {step!r}") from None
        self._step = step
        clean = {}
        for name, value in list(metrics.items())[:MAX_METRICS_PER_CALL]:
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"report(): metric {name!r} must be a number, not {value!r}") from None
            if math.isfinite(v):
                clean[str(name)[:MAX_NAME]] = v
        if not clean:
            return
        point = {"step": step, "t": round(time.time(), 3), "m": clean}
        if self.path is None:
            self._memory.append(point)
            return
        line = json.dumps(point, separators=(",", ":")) + "\n"
        with self._lock:
            if len(self._buf) >= self.max_buffered:  # the disk refuses for long: keep the newest, count the rest
                self._buf.pop(0)
                self.dropped += 1
            self._buf.append(line)
            due = len(self._buf) >= self.flush_lines or time.monotonic() - self._last_flush >= self.flush_every_s
        if due:
            self.flush()
        else:
            if self._timer is None:
                self._start_timer()
            self._wake.set()

    def _start_timer(self) -> None:
        self._timer = threading.Thread(target=self._flush_later, daemon=True, name="aistack-report")
        self._timer.start()

    def _flush_later(self) -> None:
        while True:  # sleeps until a line waits, then flushes it at most flush_every_s later
            self._wake.wait()
            self._wake.clear()
            time.sleep(max(0.0, self.flush_every_s - (time.monotonic() - self._last_flush)))
            if self._buf:
                self.flush()

    def flush(self) -> None:
        with self._lock:
            if not self._buf or self.path is None:
                return
            data, self._buf = "".join(self._buf), []
            self._last_flush = time.monotonic()
            try:  # one append of whole lines: a reader never sees half a batch as a line of its own
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.write(fd, data.encode())
                finally:
                    os.close(fd)
            except OSError:
                self._buf[:0] = data.splitlines(keepends=True)  # tried again at the next flush

    def points(self) -> list[dict]:
        return list(self._memory)


_reporter: Reporter | None = None


def _get() -> Reporter:
    global _reporter
    if _reporter is None:
        _reporter = Reporter(os.environ.get(ENV) or None, stop_path=os.environ.get(STOP_ENV) or None)
        atexit.register(_reporter.flush)
    return _reporter


def report(step: int | None = None, **metrics) -> None:
    """Record ``metrics`` (names -> numbers) at ``step`` (default: the last step + 1) for the running job.
    Cheap (a line appended to a batch); never blocks on the service. Not finite values are left out.
    Raises :class:`TrialStopped` (before recording) once the experiment stopped this trial; see
    ``should_stop()`` and ``raise_on_stop()``."""
    _get().report(step, **metrics)


def should_stop() -> bool:
    """True when the experiment pruned (or a person stopped) this trial: end the loop (after saving what you
    need). Cheap: one ``stat()`` of the run folder's stop marker at most every 20 ms. Always False outside a job."""
    r = _get()
    r._checked = 0.0 if r._stopped is None else r._checked  # an explicit question always looks
    return r.should_stop()


def raise_on_stop(flag: bool = True) -> None:
    """Whether ``report()`` raises :class:`TrialStopped` once stopped (default True); with False the notebook
    asks ``should_stop()`` itself."""
    _get().raise_on_stop = bool(flag)


def flush() -> None:
    """Write what is batched now (also done by itself within ``flush_every_s`` and at exit)."""
    _get().flush()
