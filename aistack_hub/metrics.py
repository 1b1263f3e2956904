"""The /services/aistack/metrics endpoint's content: the job system's registry
(``job_runner.controller.metrics``, where the metric objects live and are updated)."""
from __future__ import annotations

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from job_runner.controller.metrics import REGISTRY

__all__ = ["REGISTRY", "render"]


def render() -> tuple[bytes, str]:
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
