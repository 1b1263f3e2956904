"""The queued job system and the scheduling core shared by servers and jobs."""

# --- experiments (issue 13) --- report() in every job's kernel: ``from job_runner import report``
from .report import report  # noqa: E402,F401
