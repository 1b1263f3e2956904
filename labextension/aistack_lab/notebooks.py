"""Reading the notebook to submit and saving a job's output, through the server's contents manager."""

import re

import nbformat
from jupyter_server.utils import ensure_async
from tornado import web


class NotebookError(Exception):
    def __init__(self, message, status=400):
        super().__init__(message)
        self.status = status


async def read_notebook(contents_manager, path, content=None):
    """Return nbformat JSON (a dict): ``content`` when the UI sent the unsaved model, else the file."""
    if content is not None:
        if not isinstance(content, dict) or not isinstance(content.get("cells"), list):
            raise NotebookError("'content' must be a notebook (nbformat JSON with a 'cells' list)")
        try:
            nb = nbformat.from_dict(content)
            nbformat.validate(nb)
        except Exception as e:  # nbformat raises several kinds; all mean "not a notebook"
            raise NotebookError(f"'content' is not a valid notebook: {str(e).splitlines()[0]}")
        return content
    if not path or not isinstance(path, str):
        raise NotebookError("give the notebook's 'path' (or its unsaved 'content')")
    if not path.endswith(".ipynb"):
        raise NotebookError(f"{path} is not a notebook (.ipynb)")
    try:
        model = await ensure_async(contents_manager.get(path, content=True, type="notebook"))
    except web.HTTPError as e:
        raise NotebookError(e.log_message or f"cannot read {path}", status=e.status_code if e.status_code < 500 else 400)
    return model["content"]


def _safe_stem(name):
    stem = re.sub(r"[^A-Za-z0-9_.\-]+", "-", str(name)).strip("-.") or "job"
    return stem[:80]


async def save_output(contents_manager, directory, name, job_id, output):
    """Save ``output`` (nbformat JSON) as ``{directory}/{name}-{job_id}.ipynb``; returns the path."""
    if not isinstance(output, dict) or not isinstance(output.get("cells"), list):
        raise NotebookError("the service returned no output notebook for this job yet", status=404)
    directory = str(directory).strip("/")
    if ".." in directory.split("/"):
        raise NotebookError("the output directory must stay inside this server's files")
    if directory and not await ensure_async(contents_manager.dir_exists(directory)):
        parts = directory.split("/")
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if not await ensure_async(contents_manager.dir_exists(sub)):
                await ensure_async(contents_manager.save({"type": "directory"}, sub))
    path = f"{directory}/{_safe_stem(name)}-{job_id}.ipynb" if directory else f"{_safe_stem(name)}-{job_id}.ipynb"
    await ensure_async(contents_manager.save({"type": "notebook", "format": "json", "content": output}, path))
    return path
