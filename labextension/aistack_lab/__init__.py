"""aistack_lab: the Jupyter Server side of the AIStack Hub "Run as job" JupyterLab extension.

It runs inside each user's single-user server. The browser talks only to it (same origin, the server's
own auth and XSRF checks); it reads notebooks through the server's contents manager and forwards job
requests to the hub's ``aistack`` service with the server's own JupyterHub token, so there is no second
login. The frontend lives next to this package in ``labextension/src`` and is prebuilt into
``aistack_lab/labextension`` (shipped in the wheel, so users need no Node).
"""

from pathlib import Path

__version__ = "0.1.0"

#: The npm package name of the frontend; the labextension folder name under share/jupyter/labextensions.
LABEXTENSION_NAME = "aistack_lab"


def _jupyter_labextension_paths():
    """Where JupyterLab finds the prebuilt frontend (used by ``jupyter labextension develop``)."""
    return [{"src": str(Path(__file__).parent / "labextension"), "dest": LABEXTENSION_NAME}]


def _jupyter_server_extension_points():
    return [{"module": "aistack_lab"}]


def _load_jupyter_server_extension(serverapp):
    """Register the handlers under ``{base_url}aistack-lab/``."""
    from .handlers import setup_handlers

    setup_handlers(serverapp)
    serverapp.log.info("aistack_lab: Run-as-job server extension loaded")


# jupyter_server < 2 / notebook name of the same hook
load_jupyter_server_extension = _load_jupyter_server_extension
