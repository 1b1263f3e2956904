"""The experiment view's browser test reuses the lab extension tests' hub (tests/labextension/conftest.py)."""
from tests.labextension.conftest import ana, lab_hub  # noqa: F401
