"""Pipelines of notebook jobs (issue 14): the file format (``spec``), the run's state machine (``dag``),
what tasks pass on (``values``). The service (aistack_hub.services.pipelines) stores runs and submits the
nodes as ordinary jobs. docs/pipelines.md."""
import os

from .dag import Node, Plan, expand, retry, step  # noqa: F401
from .spec import Pipeline, SpecError, Task, parse_pipeline  # noqa: F401
from .values import MIME, report, reported_values  # noqa: F401

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pipeline.schema.json")
