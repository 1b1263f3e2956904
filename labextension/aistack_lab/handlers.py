"""HTTP handlers of the server extension, under ``{base_url}aistack-lab/``.

- ``api/<path>``: forwards to the aistack service API (``GET jobs``, ``POST jobs/{id}/cancel``, ...).
- ``jobs`` (POST): submits the notebook at ``path`` (or the unsaved ``content`` the UI sends) as a job.
- ``inspect`` (POST): the parameters of that notebook, from the service's papermill inspection.
- ``jobs/{id}/open-output`` (POST): saves the job's output notebook (partial while running) into this
  server's contents so JupyterLab can open it.
"""

import json
import os
import re
from datetime import datetime, timezone

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join
from tornado import web

from .client import AistackServiceClient, ServiceError
from .notebooks import NotebookError, read_notebook, save_output

# what the browser may reach through the forwarder: the service's own paths, no '..' or absolute URLs
_FORWARD_PATH = re.compile(r"^(?!.*(?:^|/)\.\.?(?:/|$))[A-Za-z0-9_\-.~/]+$")


class AistackBaseHandler(APIHandler):
    auth_resource = "contents"

    @property
    def client(self) -> AistackServiceClient:
        return self.settings["aistack_lab_client"]

    async def prepare(self):
        await super().prepare()  # jupyter_server authenticates here (sets current_user)
        # the forwarded requests carry the *owner's* token: someone the server is shared with
        # (JupyterHub sharing) must not act as the owner through this extension
        owner = os.environ.get("JUPYTERHUB_USER")
        user = self.current_user
        if owner and user is not None and getattr(user, "username", owner) != owner:
            raise web.HTTPError(403, "only the owner of this server may submit or manage jobs from it")

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": "lab_extension", "message": message}))

    def fail(self, status, code, message):
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": code, "message": message}))

    def json_body(self):
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            raise web.HTTPError(400, "the request body is not JSON")
        if not isinstance(body, dict):
            raise web.HTTPError(400, "the request body must be a JSON object")
        return body

    def relay(self, status, ctype, data):
        """The service's answer, status and all; a 5xx of the service is its problem, not this server's:
        it is reported as a bad gateway."""
        self.set_status(status if status < 500 else 502)
        self.finish(data, set_content_type=ctype)

    async def read_submitted_notebook(self, body):
        """The notebook to run: the unsaved model from the UI, else the saved file at ``path``."""
        return await read_notebook(self.contents_manager, body.get("path"), body.get("content"))


class ForwardHandler(AistackBaseHandler):
    """Passes a request through to the service and its answer back, status and all."""

    @web.authenticated
    @authorized
    async def _forward(self, path):
        if not _FORWARD_PATH.match(path):
            return self.fail(400, "bad_path", f"not a service path: {path!r}")
        method = self.request.method
        body = self.request.body if method in ("POST", "PUT", "PATCH") else None
        try:
            answer = await self.client.fetch(method, path, query=self.request.query, body=body or None,
                                             request=self.request)
        except ServiceError as e:
            return self.fail(e.status, e.code, e.message)
        self.relay(*answer)

    # one handler for every verb: `authorized` takes the action from the request's method
    get = post = put = patch = delete = _forward


class NotebookPostHandler(AistackBaseHandler):
    """POST {path, content?, ...}: the notebook (the unsaved model from the UI, else the saved file) goes to
    the service as part of ``service_body`` (the service may not see this server's files: never the path)."""

    service_path = ""

    def service_body(self, body: dict, notebook: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    @web.authenticated
    @authorized
    async def post(self):
        body = self.json_body()
        try:
            notebook = await self.read_submitted_notebook(body)
        except NotebookError as e:
            return self.fail(e.status, "bad_notebook", str(e))
        try:
            answer = await self.client.fetch("POST", self.service_path, body=self.service_body(body, notebook),
                                             request=self.request)
        except ServiceError as e:
            return self.fail(e.status, e.code, e.message)
        self.relay(*answer)


class SubmitHandler(NotebookPostHandler):
    """POST {path, content?, ...job fields} -> the service's POST jobs with the notebook attached."""

    service_path = "jobs"

    def service_body(self, body, notebook):
        # the path only says where the notebook lives (the job runs in its folder); the service never reads it
        out = {**{k: v for k, v in body.items() if k not in ("content", "path")}, "notebook": notebook}
        if isinstance(body.get("path"), str) and body["path"].strip("/"):
            out["notebook_path"] = body["path"].strip("/")
        return out


class InspectHandler(NotebookPostHandler):
    """POST {path, content?} -> the notebook's parameters (names, types, defaults, help)."""

    service_path = "jobs/inspect"

    def service_body(self, body, notebook):
        return {"notebook": notebook}


class OpenOutputHandler(AistackBaseHandler):
    """POST {directory?} -> saves the job's output notebook here and returns {path}."""

    @web.authenticated
    @authorized
    async def post(self, job_id):
        body = self.json_body()
        directory = body.get("directory") or "aistack-jobs"
        try:
            job = await self.client.fetch_json("GET", f"jobs/{job_id}", request=self.request)
            output = await self.client.fetch_json("GET", f"jobs/{job_id}/output", request=self.request)
        except ServiceError as e:
            return self.fail(e.status, e.code, e.message)
        if isinstance(output, dict) and "notebook" in output and "cells" not in output:
            output = output["notebook"]
        name = (job or {}).get("name") or f"job-{job_id}"
        try:
            path = await save_output(self.contents_manager, directory, name, job_id, output)
        except NotebookError as e:
            return self.fail(e.status, "bad_output", str(e))
        self.finish(json.dumps({"path": path, "saved_at": datetime.now(timezone.utc).isoformat()}))


class InfoHandler(AistackBaseHandler):
    """GET -> what the UI needs to know about this server (who, and where the service is)."""

    @web.authenticated
    @authorized
    async def get(self):
        try:
            url = self.client.base_url(self.request)
        except ServiceError:
            url = None
        self.finish(json.dumps({"user": os.environ.get("JUPYTERHUB_USER"), "service_url": url}))


def setup_handlers(serverapp):
    web_app = serverapp.web_app
    client = AistackServiceClient(parent=serverapp)
    web_app.settings["aistack_lab_client"] = client
    base = url_path_join(web_app.settings["base_url"], "aistack-lab")
    web_app.add_handlers(
        ".*$",
        [
            (url_path_join(base, "info"), InfoHandler),
            (url_path_join(base, "inspect"), InspectHandler),
            (url_path_join(base, "jobs"), SubmitHandler),
            (url_path_join(base, r"jobs/([A-Za-z0-9_\-]+)/open-output"), OpenOutputHandler),
            (url_path_join(base, "api/(.*)"), ForwardHandler),
        ],
    )
