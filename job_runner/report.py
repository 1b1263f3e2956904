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
"""
from __future__ import annotations

import atexit
import json
import math
import os
import threading
import time

ENV = "AISTACK_METRICS_FILE"
MAX_NAME = 64
MAX_METRICS_PER_CALL = 64


class Reporter:
    def __init__(self, path: str | None, flush_every_s: float = 0.2, flush_lines: int = 256,
                 max_buffered: int = 100_000):
        self.path = path
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

    def report(self, step=None, **metrics) -> None:
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
        elif self._timer is None:
            self._start_timer()

    def _start_timer(self) -> None:
        self._timer = threading.Thread(target=self._flush_later, daemon=True, name="aistack-report")
        self._timer.start()

    def _flush_later(self) -> None:
        while True:
            self._wake.wait(self.flush_every_s)
            self._wake.clear()
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
        _reporter = Reporter(os.environ.get(ENV) or None)
        atexit.register(_reporter.flush)
    return _reporter


def report(step: int | None = None, **metrics) -> None:
    """Record ``metrics`` (names -> numbers) at ``step`` (default: the last step + 1) for the running job.
    Cheap (a line appended to a batch); never blocks on the service. Not finite values are left out."""
    _get().report(step, **metrics)


def flush() -> None:
    """Write what is batched now (also done by itself within ``flush_every_s`` and at exit)."""
    _get().flush()
