"""The admin page as a dashboard: JupyterHub's look (its ``page.html`` and Bootstrap 5 theme, dark mode by
``data-bs-theme`` following ``prefers-color-scheme``, JupyterHub's own ``darkmode.js``) and Chart.js charts.

- ``template_env``: our templates first, then JupyterHub's (``{% extends "page.html" %}``); ``static_url``
  points at the hub's static files (``<hub base>/hub/static/``), as the hub's own pages load them.
- ``dashboard_data``: what the charts draw, read with the viewer's token: GPU utilisation per GPU over
  time (``GET monitoring/gpus``), the queue's length and waits (``GET monitoring/queue``), open alarms.
- ``ChartJSHandler``: Chart.js (``chart.umd.js``), never committed: copied from ``node_modules/chart.js``
  into ``static/lib/`` (gitignored) by ``scripts/setup.d/40-labextension.sh``, or read from the installed
  package; missing, it answers 500 with what to run, and the page shows that instead of empty charts.
"""
from __future__ import annotations

import json
import os

import jinja2
from tornado import web

from .data import APIError, call

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CHARTJS_CANDIDATES = (os.path.join(HERE, "static", "lib", "chart.umd.js"),
                      os.path.join(REPO, "node_modules", "chart.js", "dist", "chart.umd.js"))
PARTIALS = ("accounting", "storage", "environments")


def jupyterhub_templates() -> str:
    from jupyterhub._data import DATA_FILES_PATH

    return os.path.join(DATA_FILES_PATH, "templates")


def hub_base() -> str:
    base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
    return (base if base.endswith("/") else base + "/") + "hub/"


def static_url(path: str, include_version: bool = True) -> str:
    return hub_base() + "static/" + path


def template_env() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.ChoiceLoader([
        jinja2.FileSystemLoader(os.path.join(HERE, "templates")),
        jinja2.FileSystemLoader(jupyterhub_templates())]), autoescape=True)
    env.globals.update(static_url=static_url, base_url=hub_base(), prefix=hub_base(), parsed_scopes=(),
                       logout_url=hub_base() + "logout", login_url=hub_base() + "login", services=(),
                       no_spawner_check=True, xsrf_token="")
    return env


def chartjs_path() -> str | None:
    return next((p for p in CHARTJS_CANDIDATES if os.path.isfile(p)), None)


def partials() -> dict:
    """Which of the other features' partials and scripts exist (included with ``ignore missing``)."""
    return {name: os.path.isfile(os.path.join(HERE, "static", f"{name}.js")) for name in PARTIALS}


class ChartJSHandler(web.RequestHandler):
    def get(self):
        path = chartjs_path()
        if path is None:
            raise web.HTTPError(500, "Chart.js is missing: run `jlpm install` and scripts/setup.d/40-labextension.sh "
                                "(it copies node_modules/chart.js/dist/chart.umd.js to aistack_hub/admin/static/lib/)")
        self.set_header("Content-Type", "application/javascript; charset=utf-8")
        self.set_header("Cache-Control", "max-age=3600")
        with open(path, "rb") as f:
            self.finish(f.read())


async def _get(api: str, token: str, path: str, query=None):
    try:
        return await call(api, token, "GET", path, query=query)
    except APIError as e:
        return {"error": e.message}


async def dashboard_data(api: str, token: str, admin: bool, gpu_hours: list) -> dict:
    out = {"gpu_hours": gpu_hours, "gpus": None, "queue": None, "alarms": None, "chartjs": chartjs_path() is not None}
    if admin:
        out["gpus"] = await _get(api, token, "monitoring/gpus")
        out["queue"] = await _get(api, token, "monitoring/queue")
        out["alarms"] = await _get(api, token, "monitoring/alarms")
    return out


async def gpu_policies(api: str, token: str, tenants: list[str]) -> dict:
    """Each tenant's GPU idle-culling policy (``GET monitoring/policies/{tenant}``); absent if refused."""
    from urllib.parse import quote

    out = {}
    for name in tenants[:200]:
        got = await _get(api, token, f"monitoring/policies/{quote(name, safe='')}")
        if "effective" in got:
            out[name] = got
    return out


def as_json(data) -> str:
    """JSON safe inside a <script type="application/json"> element."""
    return json.dumps(data, default=str).replace("</", "<\\/")
