"""Fixtures of the schedule tests: the real JupyterHub and PostgreSQL of tests/job_service; the aistack
service with the NoopExecutor (a schedule's jobs are ordinary jobs; what they run does not matter here, and
per-second schedules with real kernels would not fit two cores). No user's server runs anywhere."""
from __future__ import annotations

import datetime as dt
import http.server
import json
import math
import threading
import time

import pytest

from tests.job_service.conftest import deployment_path, hub, postgres  # noqa: F401
from tests.job_service.helpers import ServiceProcess, make_notebook

NB = make_notebook("print('scheduled')", params="x = 1")


def config(homes, offset: float, **schedules) -> dict:
    return {"Controller": {"tick_interval_s": 0.2}, "NoopExecutor": {"duration_s": 0.5},
            "PipelineSettings": {"tick_interval_s": 0.2},
            "ScheduleSettings": {"min_interval_s": 1, "clock_offset_s": offset, **schedules},
            "AIStackService": {"notebook_root": str(homes / "{user}"), "validate_kernels": False,
                               "executor_class": "job_runner.executors.noop.NoopExecutor"}}


def minute_offset(lead_s: float) -> float:
    """A clock offset that puts the service's clock ``lead_s`` before a minute boundary now."""
    now = time.time()
    boundary = math.ceil((now + 60) / 60) * 60
    return boundary - lead_s - now


@pytest.fixture(scope="module")
def homes(tmp_path_factory):
    d = tmp_path_factory.mktemp("homes")
    (d / "alice").mkdir()
    (d / "alice" / "nb.ipynb").write_text(json.dumps(NB))
    return d


class _Hook(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.server.got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def webhook():
    """A real HTTP server that records what the service POSTs to ScheduleSettings.webhook_url."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.got = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def schedule_service(hub, deployment_path, tmp_path_factory, homes, webhook):
    d = tmp_path_factory.mktemp("svc")
    offset = minute_offset(25)  # the service starts in < 10 s; its first minute slot comes ~25 s from now
    url = f"http://127.0.0.1:{webhook.server_address[1]}/hook"
    svc = ServiceProcess(str(d), f"sqlite:///{d}/aistack.sqlite", deployment_path, hub_api_url=hub["api"],
                         port=hub["service_port"], config=config(homes, offset, webhook_url=url))
    svc.offset = offset
    svc.start()
    yield svc
    svc.stop()


def parse_iso(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.rstrip("Z"))
