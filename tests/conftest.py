"""Session-wide safety net: no process started by a test outlives the test run.

Hubs, proxies, services, kernels and control planes are started (and stopped) by the fixtures of each
test folder. A process whose parent died first (a proxy left by a SIGKILLed hub, a kernel of a killed
runner, anything that called setsid) is re-parented to init and would keep running after pytest,
holding ports and CI's output pipe. Every process the tests start inherits a marker variable in its
environment; at the end of the session any process still carrying this session's marker is stopped
(SIGTERM, then SIGKILL after a grace period) and named, since a leftover is a fixture bug.
"""
from __future__ import annotations

import os
import signal
import sys
import uuid

import psutil

MARKER = "AISTACK_TEST_SESSION"


def pytest_configure(config):
    os.environ.setdefault(MARKER, uuid.uuid4().hex)


def _leftovers(session_id: str) -> list[psutil.Process]:
    me = os.getpid()
    out = []
    for p in psutil.process_iter():
        if p.pid == me:
            continue
        try:
            if p.environ().get(MARKER) == session_id and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            continue
    return out


def pytest_unconfigure(config):
    session_id = os.environ.get(MARKER)
    if not session_id:
        return
    left = _leftovers(session_id)
    if not left:
        return
    names = []
    for p in left:
        try:
            names.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(left, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    sys.stderr.write("tests/conftest.py: stopped processes the tests left running:\n  " + "\n  ".join(names) + "\n")
