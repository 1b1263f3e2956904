"""Fast tests of the API's parts without a hub: request models, the error map, the offload pools.

No subprocess service and no HTTP beyond one in-process tornado app (the error map as a client sees it).
"""
from __future__ import annotations

import json
import os
import pickle

import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.web import Application

from aistack_hub.api.base import APIHandler, APISettings
from aistack_hub.api.errors import answer, status_of
from aistack_hub.services import notebooks
from aistack_hub.services.errors import Conflict, DomainError, Forbidden, Invalid, NotFound, TooLarge, Unavailable
from aistack_hub.services.models import AllocationRequest, JobQuery, JobSubmit, parse
from aistack_hub.services.offload import Offload

from .helpers import free_port, make_notebook

NB = make_notebook("print(x)", params="x: int = 1\nlr = 0.5  # learning rate")


def prepared():
    return notebooks.prepare(NB)


# ----------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("body,code,words", [
    ({"profile": "cpu"}, "bad_request", "exactly one"),
    ({"path": "a.ipynb"}, "bad_request", "'profile' is required"),
    ({"path": "a.ipynb", "profile": "cpu", "name": "Bad_Name"}, "bad_name", "Kubernetes name"),
    ({"path": "a.ipynb", "profile": "cpu", "name": "a" * 64}, "bad_name", "Kubernetes name"),
    ({"path": "a.ipynb", "profile": "cpu", "surprise": 1, "cwd": "/"}, "bad_request", "unknown fields: cwd, surprise"),
    ({"path": "a.ipynb", "profile": "cpu", "timeout_s": -1}, "bad_request", "'timeout_s'"),
    ({"path": "a.ipynb", "profile": "cpu", "timeout_s": True}, "bad_request", "'timeout_s'"),
    ({"path": "a.ipynb", "profile": "cpu", "max_retries": 1.0}, "bad_request", "'max_retries'"),
    ({"path": "a.ipynb", "profile": "cpu", "max_retries": 11}, "bad_request", "'max_retries'"),
    ({"path": "a.ipynb", "profile": "cpu", "retry_on": ["cancelled"]}, "bad_request", "'retry_on'"),
    ({"path": "a.ipynb", "profile": "cpu", "priority": "urgent"}, "bad_request", "'priority'"),
    ({"path": "a.ipynb", "profile": "cpu", "kernel_name": "no spaces"}, "bad_request", "'kernel_name'"),
    ({"path": "", "profile": "cpu"}, "bad_request", "'path'"),
])
def test_job_submit_refuses_with_the_field_and_its_code(body, code, words):
    with pytest.raises(Invalid) as e:
        parse(JobSubmit, body)
    assert e.value.code == code and words in e.value.message, e.value.message


def test_job_submit_takes_json_types_as_sent():
    req = parse(JobSubmit, {"notebook": prepared(), "profile": "cpu", "timeout_s": 10, "max_retries": 2,
                            "parameters": {"x": 3}, "priority": "high"})
    assert req.timeout_s == 10.0 and req.max_retries == 2 and req.priority == "high"
    assert req.retry_on == ["kernel_died", "infrastructure"] and req.path is None
    assert parse(JobSubmit, {"path": "a.ipynb", "profile": "cpu", "max_retries": None}).max_retries == 0
    assert req.notebook.parameters["x"]["type"] == "int" and req.notebook.kernel_name == "python3"


def test_queries_are_converted_from_strings():
    q = parse(JobQuery, {"limit": "7", "before": "100", "state": ["queued", "running"]})
    assert (q.limit, q.before, q.state) == (7, 100, ["queued", "running"])
    # a limit above Limits.max_page_size is refused by the service (tests/limits/test_api_limits.py)
    for bad in ({"limit": "0"}, {"limit": "x"}, {"state": ["bogus"]}, {"before": "0"}):
        with pytest.raises(Invalid):
            parse(JobQuery, bad)


def test_allocation_wait_is_a_boolean_or_seconds():
    base = {"user": "u", "tenant": "t", "profile": "p"}
    assert parse(AllocationRequest, {**base, "wait": True}).wait is True
    assert parse(AllocationRequest, {**base, "wait": 1.5}).wait == 1.5
    assert parse(AllocationRequest, base).wait is False
    for bad in ({"wait": "yes"}, {"wait": -1}, {"wait": 3601}, {"user": ""}, {"user": None}):
        with pytest.raises(Invalid):
            parse(AllocationRequest, {**base, **bad})


# --------------------------------------------------------------------------------------- notebooks
@pytest.mark.parametrize("body,code", [
    (b"not json", "bad_json"), (b"[1, 2]", "bad_request"), (b'{"notebook": {"cells": "no"}}', "bad_notebook"),
    (b'{"notebook": {"nbformat": 4}}', "bad_notebook"), (b'{"notebook": [1]}', "bad_notebook"),
    (b"\xff\xfe", "bad_json"),
])
def test_bad_submission_bodies_are_invalid(body, code):
    with pytest.raises(Invalid) as e:
        notebooks.decode_submission(body)
    assert e.value.code == code


def test_a_submission_body_is_decoded_with_its_notebook_prepared():
    data = notebooks.decode_submission(json.dumps({"notebook": NB, "profile": "cpu"}).encode())
    nb = data["notebook"]
    assert data["profile"] == "cpu" and isinstance(nb, notebooks.PreparedNotebook)
    assert nb.parameters["lr"]["help"] == "learning rate" and json.loads(nb.text)["nbformat"] == 4


def test_domain_errors_survive_the_process_boundary():
    for e in (Invalid("no", "bad_notebook"), TooLarge("big"), NotFound("gone")):
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and back.code == e.code and back.message == e.message


# --------------------------------------------------------------------------------------- error map
@pytest.mark.parametrize("exc,status,code", [
    (Invalid("x"), 400, "bad_request"), (Invalid("x", "bad_name"), 400, "bad_name"),
    (Forbidden("x", "over_quota"), 403, "over_quota"), (NotFound("x"), 404, "not_found"),
    (Conflict("x", "no_capacity"), 409, "no_capacity"), (TooLarge("x"), 413, "too_large"),
    (Unavailable("x"), 503, "unavailable"), (DomainError("x"), 400, "error"),
])
def test_error_map(exc, status, code):
    assert status_of(exc) == status
    assert answer(exc, 500, "Internal Server Error") == (status, {"error": code, "message": "x"})


def test_a_bug_is_a_500_without_its_details():
    status, body = answer(KeyError("secret detail"), 500, "Internal Server Error")
    assert status == 500 and body == {"error": "internal_error", "message": "internal error (see the service log)"}


class _Raises(APIHandler):
    auth_required = False

    async def get(self, what):
        raise {"forbidden": Forbidden("quota says no", "over_quota"), "missing": NotFound("no job '7'"),
               "bug": ZeroDivisionError("boom")}[what]


async def test_handlers_answer_domain_errors_as_json_4xx():
    port = free_port()
    server = HTTPServer(Application([(r"/(\w+)", _Raises, {"api": APISettings(services=None)})]))
    server.listen(port, "127.0.0.1")
    try:
        client = AsyncHTTPClient()
        seen = {}
        for what in ("forbidden", "missing", "bug"):
            r = await client.fetch(f"http://127.0.0.1:{port}/{what}", raise_error=False)
            seen[what] = (r.code, json.loads(r.body), r.headers["Content-Type"])
        assert seen["forbidden"][:2] == (403, {"error": "over_quota", "message": "quota says no"})
        assert seen["missing"][:2] == (404, {"error": "not_found", "message": "no job '7'"})
        assert seen["bug"][0] == 500 and seen["bug"][1]["error"] == "internal_error"
        assert all(ct.startswith("application/json") for _, _, ct in seen.values())
    finally:
        server.stop()


# ----------------------------------------------------------------------------------------- offload
def _die():
    os._exit(3)  # a worker killed (the OOM killer's effect, from inside)


async def test_offload_runs_notebook_work_in_a_worker_and_survives_its_death():
    off = Offload(threads=2, workers=1)
    try:
        body = json.dumps({"notebook": NB}).encode()
        data = await off.cpu(notebooks.decode_submission, body)
        assert data["notebook"].kernel_name == "python3"
        with pytest.raises(Invalid) as e:  # a domain error raised in the worker arrives as itself
            await off.cpu(notebooks.decode_submission, b"[]")
        assert e.value.code == "bad_request"
        with pytest.raises(Unavailable):
            await off.cpu(_die)
        assert (await off.cpu(notebooks.decode_object, b'{"a": 1}')) == {"a": 1}  # a fresh pool
        assert await off.io(os.getpid) == os.getpid()
    finally:
        off.shutdown(wait=True)
        # spawn's resource tracker lives as long as the process that started it (here: pytest, whose
        # safety net would name it a leftover); the service's goes with the service
        from multiprocessing import resource_tracker

        resource_tracker._resource_tracker._stop()


def test_path_ids_and_names_are_ascii_only():
    # str.isdigit() takes "¹" and int() refuses it: DELETE allocations/%C2%B9 answered 500 (found by
    # tests/job_service/test_fuzz.py); names with non-ASCII letters are no Kubernetes names either.
    from aistack_hub.services.models import is_k8s_name, row_id

    assert row_id("42") == 42
    assert [row_id(x) for x in ("¹", "٣", "", "1" * 19, "-1", "1.0")] == [0] * 6
    assert is_k8s_name("team-a") and is_k8s_name("a")
    assert not any(is_k8s_name(x) for x in ("té", "a¹", "-a", "a-", "A", "a" * 64, ""))


def test_a_body_with_a_lone_surrogate_is_refused_where_it_is_read_and_a_pair_is_kept():
    from aistack_hub.services import notebooks
    from aistack_hub.services.errors import Invalid

    # a pair (an emoji) and an escaped backslash followed by "ud800" are text
    assert notebooks.decode_object(b'{"a": "\\ud83d\\ude00", "b": "\\\\ud800"}') == {"a": "\U0001F600", "b": "\\ud800"}
    for body in (b'{"name": "\\ud800"}', b'{"days": [{"\\udc00x": 1}]}', b'{"t": "ok \\uDBFF"}'):
        with pytest.raises(Invalid, match="lone UTF-16 surrogate"):
            notebooks.decode_object(body)
