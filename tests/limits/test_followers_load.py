"""Many log followers do not slow the API down (a stream idles with a back-off and never blocks the loop)."""
from __future__ import annotations

import socket
import statistics
import time

import pytest

from job_service.helpers import SERVICE_TOKEN, ServiceProcess, make_notebook, wait_for

STREAMS = 150


@pytest.fixture(scope="module")
def many(tmp_path_factory, deployment_path):  # noqa: F811
    d = tmp_path_factory.mktemp("followers")
    cfg = {"Controller": {"tick_interval_s": 0.2}, "NoopExecutor": {"duration_s": 3600},
           "Limits": {"max_log_followers_per_user": STREAMS + 10},
           "AIStackService": {"executor_class": "job_runner.executors.noop.NoopExecutor"}}
    svc = ServiceProcess(str(d), f"sqlite:///{d}/aistack.sqlite", deployment_path, config=cfg)
    svc.start()
    yield svc
    svc.stop()


def _follow(port: int, path: str) -> socket.socket:
    """A follow stream held open (the request sent, the answer read only up to its headers)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: token {SERVICE_TOKEN}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "the service closed a follow stream"
        head += chunk
    assert head.startswith(b"HTTP/1.1 200"), head[:200]
    return sock


def test_150_followers_leave_get_jobs_fast(many):
    """Closes: 150 ?follow=1 log streams pushed GET jobs to 5 s (streams must not block the loop)."""
    s, api = many.session(), many.api
    jid = s.post(api + "jobs", json={"notebook": make_notebook("1"), "profile": "cpu", "tenant": "team-c"}).json()["id"]
    wait_for(lambda: s.get(api + f"jobs/{jid}").json()["state"] == "running", 30, what="the job to run")

    def sample(n=20):
        out = []
        for _ in range(n):
            t = time.perf_counter()
            assert s.get(api + "jobs", timeout=30).status_code == 200
            out.append(time.perf_counter() - t)
        return out

    idle = sample()
    path = f"{many.url.split('127.0.0.1:' + str(many.port))[1]}api/jobs/{jid}/logs?follow=1"
    socks = [_follow(many.port, path) for _ in range(STREAMS)]
    try:  # the streams are open (each answered its headers) and idle
        loaded = sample()
    finally:
        for sock in socks:
            sock.close()
    print(f"GET jobs median idle {statistics.median(idle) * 1000:.0f} ms, with {STREAMS} followers "
          f"{statistics.median(loaded) * 1000:.0f} ms (max {max(loaded) * 1000:.0f} ms)")
    assert statistics.median(loaded) < max(0.5, 5 * statistics.median(idle)), (idle, loaded)
