"""Where blocking work goes instead of the event loop: one object, owned by the service.

- ``io(fn, ...)``: a bounded thread pool for work that waits (database sessions, SQLite's write lock,
  run-file reads, the kernelspec scan). It is also the loop's default executor, so ``asyncio.to_thread``
  anywhere in the process lands in it.
- ``cpu(fn, ...)``: worker processes for work that computes (``notebooks``: JSON decoding, nbformat
  validation, papermill inspection of up to 16 MiB). Pure-Python CPU work in a thread would still hold the
  GIL against the loop for seconds; in a process it cannot. ``workers=0`` runs it in the thread pool instead.
"""
from __future__ import annotations

import asyncio
import functools
import multiprocessing
import os
import threading
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .errors import Unavailable


WORKER_NICE = 10  # workers yield the CPU to the service's own process (the API, the scheduling pass)


def _init_worker(parent_pid: int):
    """Worker initializer: a lower CPU priority; leave when the service is gone (a SIGKILLed service leaves
    no worker behind)."""
    os.nice(WORKER_NICE)

    def watch():
        import time

        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, name="watch-parent", daemon=True).start()


class Offload:
    def __init__(self, threads: int = 8, workers: int = 2):
        self.threads = ThreadPoolExecutor(max(1, threads), thread_name_prefix="aistack-io")
        self.workers = max(0, workers)
        self._procs: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()
        self._at_start: list = []

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        loop.set_default_executor(self.threads)

    async def io(self, fn, /, *args, **kwargs):
        return await asyncio.get_running_loop().run_in_executor(self.threads, functools.partial(fn, *args, **kwargs))

    async def cpu(self, fn, /, *args):
        if not self.workers:
            return await self.io(fn, *args)
        pool = self._pool()
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)
        except BrokenProcessPool:
            # A worker died (OOM killer, a signal): the next call starts a fresh pool.
            with self._lock:
                if self._procs is pool:
                    self._procs = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise Unavailable("the notebook worker stopped; send the request again") from None

    def _pool(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._procs is None:
                # spawn, not fork: the service has threads (pools, sqlite), which fork does not copy safely
                self._procs = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                  initializer=_init_worker, initargs=(os.getpid(),))
            return self._procs

    def at_start(self, fn) -> None:
        """Run ``fn`` in the background at service start, after ``warm``'s in-process part (a kernelspec scan:
        ready before the first submission, without competing with what the first inspection needs)."""
        self._at_start.append(fn)

    def warm(self, fn) -> None:
        """At service start, in the background, one after the other so that the first matters most: ``fn``
        in a thread (imports for the small requests done in the threads), the ``at_start`` work, then the
        worker processes, each running ``fn`` once. Nothing waits for it: a request that comes first is
        served as it would have been (the import lock makes it wait for an import under way, never twice).
        On a busy two-core machine all of it at once made the first "Run as job" wait seconds."""

        def start():
            for step in [fn, *self._at_start]:
                try:
                    step()
                except Exception:  # noqa: BLE001 - warming is best effort; the request path does it again
                    pass
            if self.workers:
                pool = self._pool()
                for _ in range(self.workers):
                    pool.submit(fn)

        self.threads.submit(start)

    def shutdown(self, wait: bool = False) -> None:
        with self._lock:
            procs, self._procs = self._procs, None
        if procs is not None:
            workers = list((getattr(procs, "_processes", None) or {}).values())
            procs.shutdown(wait=wait, cancel_futures=True)
            for p in workers:  # idle workers leave at once; one busy with a big notebook is not waited for long
                p.join(timeout=2.0)
                if p.is_alive():
                    p.terminate()
        self.threads.shutdown(wait=wait, cancel_futures=True)
