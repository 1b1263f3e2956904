"""The REST API of the `aistack` JupyterHub service (under /services/aistack/api/)."""
from .routes import api_handlers  # noqa: F401
