"""Executors run admitted notebook jobs: LocalExecutor (papermill in a process group),
KubernetesExecutor (a batch/v1 Job per notebook, in kubernetes.py) and NoopExecutor (benchmarks)."""
from .base import ExecState, Executor, JobSpec  # noqa: F401
