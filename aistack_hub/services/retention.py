"""What the retention cleanup of finished jobs did (``GET retention``, admins): its settings, its last runs,
their totals, and what is due next (``job_runner.controller.retention``)."""
from __future__ import annotations

from sqlalchemy import func

from job_runner.db import FINAL_STATES, Job, RetentionRun
from job_runner.db.ops import iso

from .context import Identity, ServiceContext

COUNTS = ("jobs_removed", "notebooks_removed", "files_removed", "bytes_freed")


def run_json(r) -> dict:
    return {"at": iso(r.at), "replica": r.replica, "cutoff": iso(r.cutoff), "seconds": r.seconds, "error": r.error,
            **{c: getattr(r, c) for c in COUNTS}}


class RetentionService:
    def __init__(self, ctx: ServiceContext):
        self.ctx = ctx

    def _report_db(self, runs: int) -> dict:
        ret = getattr(self.ctx.controller, "retention", None)
        with self.ctx.db.read() as s:
            rows = [run_json(r) for r in s.query(RetentionRun).order_by(RetentionRun.id.desc()).limit(runs)]
            totals = s.query(*[func.coalesce(func.sum(getattr(RetentionRun, c)), 0) for c in COUNTS],
                             func.count(RetentionRun.id)).one()
            finished = s.query(func.count(Job.id)).filter(Job.state.in_(FINAL_STATES)).scalar()
        return {
            # None: kept forever (0 days, or no cleanup in this service)
            "finished_job_days": ret.finished_job_days if ret is not None and ret.finished_job_days > 0 else None,
            "interval_s": ret.interval_s if ret is not None else None,
            "finished_jobs_kept": finished,
            "last_run": rows[0] if rows else None,
            "runs": rows,
            "totals": {**dict(zip(COUNTS, (int(v) for v in totals[:-1]))), "runs": int(totals[-1])},
        }

    async def report(self, ident: Identity, runs: int = 20) -> dict:
        """Settings, the last ``runs`` cleanups and the totals of those recorded (admins only)."""
        self.ctx.require_admin(ident)
        return await self.ctx.offload.io(self._report_db, runs)
