"""Request models of the API operations (pydantic, already a JupyterHub dependency).

Handlers build one from the request (``parse``) and hand it to one service method; a model that does not
validate is an ``Invalid`` error with the field's code (``bad_name``, ...) or ``bad_request``. Bodies are
strict (JSON types as sent: ``true`` is not 1, ``1.0`` is not an integer), queries are strings converted.
"""
from __future__ import annotations

import re

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from job_runner.db import JOB_STATES
from job_runner.failures import CANCELLED, DEFAULT_RETRY_ON, FAILURE_CLASSES
from job_runner.scheduling import PRIORITIES

from .errors import Invalid
from .notebooks import PreparedNotebook

MAX_TIMEOUT_S = 30 * 86400
MAX_RETRIES = 10
MAX_ALLOCATION_WAIT_S = 3600
RETRYABLE = tuple(c for c in FAILURE_CLASSES if c != CANCELLED)
K8S_NAME_RULE = ("a valid Kubernetes name: lower-case letters, digits and '-', starting and ending with a "
                 "letter or digit, at most 63 characters")

Priority = Literal[PRIORITIES]
Seconds = Annotated[float, Field(ge=1, le=MAX_TIMEOUT_S, allow_inf_nan=False)]
Name255 = Annotated[str, Field(min_length=1, max_length=255)]


_K8S_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_ROW_ID = re.compile(r"[0-9]{1,18}")


def is_k8s_name(name: str) -> bool:
    # ASCII only: str.isdigit()/isalnum() also accept digits and letters of other scripts ("¹", "é")
    return len(name) <= 63 and _K8S_NAME.fullmatch(name) is not None


def row_id(text: str) -> int:
    """A path's id as a database row id; 0 (no such row) for anything but 1-18 ASCII digits (str.isdigit()
    accepts "¹", which int() refuses: a 500 that the fuzz test found)."""
    return int(text) if _ROW_ID.fullmatch(text) else 0


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, arbitrary_types_allowed=True)


class _Query(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class NotebookSource(_Body):
    """A notebook as content (already validated by ``notebooks.decode_submission``) or as a path in the
    user's home (``AIStackService.notebook_root``)."""

    notebook: PreparedNotebook | None = None
    path: Annotated[str, Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_source(self):
        if (self.notebook is None) == (self.path is None):
            raise PydanticCustomError("bad_request", "send exactly one of 'notebook' (nbformat JSON) or 'path'")
        return self


class InspectRequest(NotebookSource):
    pass


class JobSubmit(NotebookSource):
    profile: str
    tenant: str | None = None
    parameters: Any = Field(default_factory=dict)  # checked against the notebook (job_runner.params)
    sweep: Any = None  # grid: name -> values (job_runner.params.expand_sweep)
    name: str | None = None
    priority: Priority = "normal"
    timeout_s: Seconds | None = None
    expected_duration_s: Seconds | None = None
    max_retries: Annotated[int, Field(ge=0, le=MAX_RETRIES)] = 0
    retry_on: list[Literal[RETRYABLE]] = Field(default_factory=lambda: list(DEFAULT_RETRY_ON))
    kernel_name: Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,64}$")] | None = None
    # With 'notebook': where it lives in the user's home (the lab sends its path), recorded as the job's
    # notebook_path; a local job runs in its folder (LocalExecutor.working_folder).
    notebook_path: Annotated[str, Field(min_length=1, max_length=1024)] | None = None

    @field_validator("notebook_path")
    @classmethod
    def _relative_path(cls, v):
        if v is not None and (v.startswith("/") or "\0" in v or ".." in v.split("/")):
            raise PydanticCustomError("bad_path", "'notebook_path' must be a path inside your home, without '..'")
        return v

    @field_validator("max_retries", mode="before")
    @classmethod
    def _no_retries(cls, v):
        return 0 if v is None else v  # the lab's dialog sends null for an empty field

    @field_validator("name")
    @classmethod
    def _k8s_name(cls, v):
        if v is not None and not is_k8s_name(v):
            raise PydanticCustomError("bad_name", "'name' must be " + K8S_NAME_RULE)
        return v


class JobQuery(_Query):
    limit: Annotated[int, Field(ge=1, le=2**31)] | None = None  # default and most: Limits.*_page_size
    before: Annotated[int, Field(ge=1, le=2**62)] | None = None
    state: list[Literal[JOB_STATES]] = Field(default_factory=list)
    user: str | None = None
    tenant: str | None = None
    group_id: str | None = None


class LogsQuery(_Query):
    follow: bool = False
    offset: Annotated[int, Field(ge=0, le=2**62)] = 0


class OutputQuery(_Query):
    """A byte range of the output notebook (the Range header says the same: ``bytes=offset-``)."""

    offset: Annotated[int, Field(ge=0, le=2**62)] | None = None
    length: Annotated[int, Field(ge=1, le=2**62)] | None = None


class ProfilesQuery(_Query):
    user: str | None = None
    tenant: str | None = None


class AllocationRequest(_Body):
    user: Name255
    tenant: Name255
    profile: Name255
    server_name: Annotated[str, Field(max_length=255)] | None = None
    # false: answer now (allocated, or refused); true: queue it and answer after the scheduler's next
    # decision; seconds: also hold the answer up to that long (at most MAX_WAIT_S) while it is pending.
    wait: bool | Annotated[float, Field(ge=0, le=MAX_ALLOCATION_WAIT_S, allow_inf_nan=False)] = False
    priority: Priority = "normal"


def parse(model: type[BaseModel], data: dict):
    """``model`` validated from ``data``, or ``Invalid`` saying what is wrong."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise invalid(e) from None


def invalid(e: ValidationError) -> Invalid:
    errors = e.errors(include_url=False, include_input=False)
    extra = sorted(str(err["loc"][0]) for err in errors if err["type"] == "extra_forbidden")
    if extra:
        return Invalid(f"unknown fields: {', '.join(extra)}")
    err = errors[0]
    field = str(err["loc"][0]) if err["loc"] else ""  # union members add to loc ("wait.bool"): name the field
    if err["type"] in ("bad_request", "bad_name"):  # our own checks: the message says it all
        return Invalid(err["msg"], err["type"])
    if err["type"] == "missing":
        return Invalid(f"'{field}' is required")
    return Invalid(f"'{field}': {err['msg']}" if field else err["msg"])
