"""Fixtures of the accounting tests: the job service tests' real JupyterHub and deployment file."""
from tests.job_service.conftest import deployment_path, hub, postgres  # noqa: F401
