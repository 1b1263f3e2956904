"""Every route the service registers is in openapi.json, with every method its handler answers, and the
document names nothing the service does not answer.

The fuzz test (test_fuzz.py) sends only what the document names, so a route missing from it is never
fuzzed: the pipelines, schedules, monitoring, storage and environment endpoints were registered without
being documented, and nothing noticed (test_api only looked for one path). The routes are read from the
tornado application the service really builds (``AIStackService.make_app``), not from a list kept beside it:
monitoring's routes, for one, are added by ``make_app`` outside ``api_handlers``.
"""
from __future__ import annotations

import re

import pytest
import yaml
from tornado.web import RequestHandler

from aistack_hub.api.openapi import openapi_spec

from .helpers import DEPLOYMENT, PREFIX

METHODS = ("get", "post", "put", "patch", "delete")
GROUP = re.compile(r"\((?:[^()\\]|\\.)*\)")  # one capture group of a route's regex (none nest)


def _path(pattern: str) -> str | None:
    """A route regex under the API as an OpenAPI path with anonymous ``{}`` parameters; None if it is not
    under the API or is its catch-all."""
    api = PREFIX + "api"
    if not pattern.startswith(api + "/") or pattern.endswith(".*$"):
        return None
    path = GROUP.sub("{}", pattern[len(api):].rstrip("$"))
    return path.replace("\\.", ".").replace("\\-", "-")


def _methods(handler: type) -> set[str]:
    return {m for m in METHODS if getattr(handler, m) is not getattr(RequestHandler, m)}


@pytest.fixture(scope="module")
def routes(tmp_path_factory):
    """{openapi path with '{}' parameters: set of methods} of the service's application."""
    from aistack_hub.service import AIStackService

    d = tmp_path_factory.mktemp("routes")
    cfg = d / "config.yaml"
    cfg.write_text(yaml.safe_dump({**DEPLOYMENT, "AIStackService": {
        "executor_class": "job_runner.executors.noop.NoopExecutor"}}))
    app = AIStackService()
    app.initialize([f"--config={cfg}", f"--data-dir={d}", f"--db-url=sqlite:///{d}/routes.sqlite"])
    out: dict[str, set] = {}
    for rule in app.make_app().wildcard_router.rules:
        path = _path(rule.matcher.regex.pattern)
        if path is not None:
            out.setdefault(path, set()).update(_methods(rule.target))
    return out


def _documented() -> dict[str, set]:
    spec = openapi_spec(PREFIX + "api")
    return {re.sub(r"{[^}]+}", "{}", p): {m for m in ops if m in METHODS} for p, ops in spec["paths"].items()}


def test_every_registered_route_is_in_the_openapi_document(routes):
    assert len(routes) > 60, routes  # the reading of the router works (it found the routes at all)
    doc = _documented()
    missing = sorted(f"{m.upper()} {p}" for p, ms in routes.items() for m in ms if m not in doc.get(p, set()))
    assert not missing, "registered but not in openapi.json (so never fuzzed):\n" + "\n".join(missing)


def test_the_document_names_only_what_the_service_answers(routes):
    extra = sorted(f"{m.upper()} {p}" for p, ms in _documented().items() for m in ms if m not in routes.get(p, set()))
    assert not extra, "in openapi.json but answered 404/405 by the service:\n" + "\n".join(extra)


def test_every_path_parameter_is_declared():
    for path, ops in openapi_spec()["paths"].items():
        names = set(re.findall(r"{([^}]+)}", path))
        for method, op in ops.items():
            declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
            assert declared == names, (method, path, declared)
