"""The storage tests' real hub + service (tests/storage/conftest.py)."""
from tests.job_service.conftest import deployment_path, hub  # noqa: F401  (fixtures)
from tests.storage.conftest import storage_service  # noqa: F401  (fixture)
