"""Experiments (issue 13): POST/GET experiments, GET experiments/{id}, trial stop/resume, add a trial,
cancel; GET jobs/{id}/metrics (any job's reported metrics); POST jobs/{id}/pod/metrics (a job pod's
report() lines, per-job token)."""
from __future__ import annotations

from aistack_hub.services.errors import Invalid
from aistack_hub.services.experiments import ExperimentSubmit

from .base import APIHandler
from .pod import PodHandler


class ExperimentsHandler(APIHandler):
    async def post(self):
        req = await self.submission(ExperimentSubmit)
        out = await self.services.experiments.create(self.identity, req)
        self.set_header("Location", f"experiments/{out['id']}")
        self.write_json(out, 201)

    async def get(self):
        def num(name):
            v = self.get_query_argument(name, "")
            if v and not v.isascii() or (v and not v.isdigit()):
                raise Invalid(f"'{name}' must be a positive integer")
            return int(v) if v else None

        self.write_json(await self.services.experiments.list(self.identity, num("before"), num("limit")))


class ExperimentHandler(APIHandler):
    async def get(self, exp_id):
        self.write_json(await self.services.experiments.get(self.identity, exp_id))


class ExperimentCancelHandler(APIHandler):
    async def post(self, exp_id):
        self.write_json(await self.services.experiments.cancel(self.identity, exp_id))


class TrialsHandler(APIHandler):
    async def post(self, exp_id):
        self.write_json(await self.services.experiments.add_trial(self.identity, exp_id, await self.json_object()), 201)


class TrialStopHandler(APIHandler):
    async def post(self, exp_id, number):
        self.write_json(await self.services.experiments.stop_trial(self.identity, exp_id, number))


class TrialResumeHandler(APIHandler):
    async def post(self, exp_id, number):
        body = await self.json_object() if self.request.body else {}
        if set(body) - {"budget"}:
            raise Invalid(f"unknown fields: {', '.join(sorted(set(body) - {'budget'}))}")
        self.write_json(await self.services.experiments.resume_trial(self.identity, exp_id, number, body.get("budget")))


class JobMetricsHandler(APIHandler):
    async def get(self, job_id):
        self.write_json(await self.services.experiments.job_metrics(self.identity, job_id))


class PodMetricsHandler(PodHandler):
    async def post(self, job_id):
        self.write_json(await self.services.experiments.pod_metrics(job_id, self.token, self._raw_body("metrics")))


def experiment_routes(api: str, kw: dict) -> list:
    exp = r"experiments/([^/]+)"
    return [
        (api + "experiments", ExperimentsHandler, kw),
        (api + exp, ExperimentHandler, kw),
        (api + exp + "/cancel", ExperimentCancelHandler, kw),
        (api + exp + "/trials", TrialsHandler, kw),
        (api + exp + r"/trials/([^/]+)/stop", TrialStopHandler, kw),
        (api + exp + r"/trials/([^/]+)/resume", TrialResumeHandler, kw),
        (api + r"jobs/([^/]+)/metrics", JobMetricsHandler, kw),
        (api + r"jobs/([^/]+)/pod/metrics", PodMetricsHandler, kw),
    ]


def openapi_paths() -> dict:
    """The experiments' part of openapi.json (docs/experiments.md has the fields)."""
    from .openapi_more import model_body

    def op(summary, tag="experiments", code="200", body=None, required=True):
        out = {"tags": [tag], "summary": summary,
               "responses": {code: {"description": summary, "content": {"application/json": {"schema": {"type": "object"}}}},
                             "400": {"description": "bad input"}, "404": {"description": "not found"}}}
        if body is not None:  # the fields the handler reads, so that the fuzz test sends them
            out["requestBody"] = {"required": required, "content": {"application/json": {"schema": body}}}
        return out
    submit = model_body(ExperimentSubmit)
    submit.pop("$defs", None)  # the notebook is sent as nbformat JSON (prepared by the handler)
    submit["properties"]["notebook"] = {"$ref": "#/components/schemas/Notebook"}
    exp = "/experiments/{id}"
    return {
        "/experiments": {"post": op("Create an experiment (space, objective, strategy, budget, parallelism)", code="201",
                                    body=submit),
                         "get": op("List experiments (pages: limit, before)")},
        exp: {"get": op("An experiment: state, trials with metrics, best")},
        exp + "/cancel": {"post": op("Cancel an experiment and its trials")},
        exp + "/trials": {"post": op("Add a trial with given parameters", code="201", body={
            "type": "object", "additionalProperties": False, "properties": {"parameters": {"type": "object"}}})},
        exp + "/trials/{trial}/stop": {"post": op("Stop a trial (stopped_by: you)")},
        exp + "/trials/{trial}/resume": {"post": op("Resume a trial from its checkpoint with more budget", required=False,
                                                    body={"type": "object", "additionalProperties": False,
                                                          "properties": {"budget": {"type": "number"}}})},
        "/jobs/{id}/metrics": {"get": op("A job's reported metrics", tag="jobs")},
    }
