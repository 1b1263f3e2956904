"""SQLAlchemy ORM of the job service: tenants, jobs, job events, allocations, leases.

The database is the source of truth: the scheduling loop rebuilds its in-memory scheduler from these rows
after a restart, and every state change is a row update (with an event) written before any side effect.
"""
from __future__ import annotations

import datetime as _dt
import hashlib

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy import event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

# Job states. "admitted" = the scheduler placed it and the executor is starting it.
QUEUED = "queued"
ADMITTED = "admitted"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"
JOB_STATES = (QUEUED, ADMITTED, RUNNING, SUCCEEDED, FAILED, CANCELLED)
FINAL_STATES = (SUCCEEDED, FAILED, CANCELLED)
ACTIVE_STATES = (ADMITTED, RUNNING)

# Allocation (server workload) states.
ALLOC_PENDING = "pending"
ALLOC_ALLOCATED = "allocated"
ALLOC_RELEASED = "released"
ALLOC_STATES = (ALLOC_PENDING, ALLOC_ALLOCATED, ALLOC_RELEASED)


def notebook_sha(text: str) -> str:
    """The key of a notebook snapshot: SHA-256 of its text."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def utcnow() -> _dt.datetime:
    """Naive UTC now (SQLite has no time zones; every timestamp here is UTC)."""
    return _dt.datetime.now(_dt.timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class TenantRow(Base):
    __tablename__ = "tenants"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    # The tenant as in the deployment config (quotas, weight, admins, windows, ...), JSON.
    spec: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    # Bumped by every submission of the tenant: taking the row's write lock first serializes
    # concurrent submissions so that max_queued_jobs holds (SQLite and PostgreSQL alike).
    submit_seq: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class Job(Base):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False)
    profile: Mapped[str] = mapped_column(String(255), nullable=False)
    priority: Mapped[str] = mapped_column(String(16), nullable=False, default="normal")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=QUEUED)
    group_id: Mapped[str | None] = mapped_column(String(64), nullable=True)

    # What to run: the notebook snapshotted at submission (stored once per content in ``notebooks``: a
    # sweep's rows share one), where it came from, its parameters.
    notebook_sha: Mapped[str] = mapped_column(String(64), nullable=False)
    notebook_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    parameters: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    kernel_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    timeout_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    max_retries: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    retry_on: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    expected_duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)

    # The slice: the profile's request at submission, the scheduler's assignment once admitted (never an
    # environment: that is computed from the assignment when a process starts, job_runner.binding).
    request: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    assignment: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    # Execution: attempt number (1-based once admitted), the executor's handle, progress, failure.
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    handle: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    progress: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    failure: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    # 1 = a cancel was asked (by the API), 2 = the scheduling loop has handled it.
    cancel_requested: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    # 1 once the leading scheduling loop has taken this queued job into its scheduler.
    enqueued: Mapped[int] = mapped_column(Integer, nullable=False, default=0)

    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    admitted_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    started_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    finished_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    updated_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)

    events: Mapped[list["JobEvent"]] = relationship(
        back_populates="job", order_by="JobEvent.id", cascade="all, delete-orphan"
    )
    # Loaded on first use (within the session); rows of one sweep share one object in a session.
    notebook_row: Mapped["Notebook"] = relationship(
        primaryjoin="foreign(Job.notebook_sha) == Notebook.sha256", viewonly=True, lazy="select")

    @property
    def notebook(self) -> str:
        """The notebook's nbformat JSON (the shared snapshot's text)."""
        text = self.__dict__.get("_notebook_text")
        return text if text is not None else self.notebook_row.text

    @notebook.setter
    def notebook(self, text: str) -> None:
        # ``Job(notebook=text)``: the row points at the text's hash; the flush stores the text once
        # (``_store_notebooks``), however many jobs of the session carry it.
        self.notebook_sha = notebook_sha(text)
        self.__dict__["_notebook_text"] = text

    __table_args__ = (
        Index("ix_jobs_state_id", "state", "id"),
        Index("ix_jobs_user_id", "user", "id"),
        Index("ix_jobs_tenant_state", "tenant", "state"),
        Index("ix_jobs_group", "group_id"),
        Index("ix_jobs_cancel", "cancel_requested"),
        Index("ix_jobs_enqueued", "enqueued", "state"),
        Index("ix_jobs_notebook_sha", "notebook_sha"),
        Index("ix_jobs_finished", "finished_at"),
    )


class Notebook(Base):
    """A notebook snapshot, stored once per content (SHA-256 of its text) however many jobs run it."""

    __tablename__ = "notebooks"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    # The last submission that used it (bumped by each): retention removes a notebook no job points at
    # only when this is older than its cut-off, so a submission reusing it meanwhile keeps it.
    used_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)


class RetentionRun(Base):
    """One cleanup of finished jobs (job_runner.controller.retention): what it removed."""

    __tablename__ = "retention_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    replica: Mapped[str | None] = mapped_column(String(255), nullable=True)
    cutoff: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    jobs_removed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    notebooks_removed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    files_removed: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    bytes_freed: Mapped[int] = mapped_column(BigInteger, nullable=False, default=0)
    seconds: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class RunFile(Base):
    """One chunk of a run file of a job (job_runner.db.runfiles: the run files in the database, so that
    every replica reads what a job pod sent to any of them). ``attempt`` 0 is the job's log (appended in
    chunks at growing ``pos``); the others are whole files (output.ipynb, progress.json, result.json)
    cut into chunks of one ``version`` (a replace writes a new version, then drops the old one)."""

    __tablename__ = "run_files"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    attempt: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    pos: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # the chunk's first byte in the file
    size: Mapped[int] = mapped_column(Integer, nullable=False)
    data: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)


class JobEvent(Base):
    """One state transition of a job (the job's history)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False, index=True)
    at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    from_state: Mapped[str | None] = mapped_column(String(16), nullable=True)
    to_state: Mapped[str] = mapped_column(String(16), nullable=False)
    attempt: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    message: Mapped[str | None] = mapped_column(Text, nullable=True)
    replica: Mapped[str | None] = mapped_column(String(255), nullable=True)

    job: Mapped[Job] = relationship(back_populates="events")


class Allocation(Base):
    """A server workload: a GPU slice the hub's spawner asked for (POST allocations)."""

    __tablename__ = "allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(255), nullable=False)
    tenant: Mapped[str] = mapped_column(String(63), nullable=False)
    profile: Mapped[str] = mapped_column(String(255), nullable=False)
    server_name: Mapped[str] = mapped_column(String(255), nullable=False, default="")
    priority: Mapped[str] = mapped_column(String(16), nullable=False, default="normal")
    state: Mapped[str] = mapped_column(String(16), nullable=False, default=ALLOC_PENDING)
    request: Mapped[dict] = mapped_column(JSON, nullable=False, default=dict)
    assignment: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[_dt.datetime] = mapped_column(DateTime, nullable=False, default=utcnow)
    allocated_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    released_at: Mapped[_dt.datetime | None] = mapped_column(DateTime, nullable=True)
    # NULL: released by the hub's spawner; else why the service released it by itself (migration 0004).
    release_reason: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_allocations_state", "state"),)


class Lease(Base):
    """Leader lease for databases without advisory locks (SQLite)."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(255), nullable=False)
    expires_at: Mapped[float] = mapped_column(Float, nullable=False)


@event.listens_for(Session, "before_flush")
def _store_notebooks(session: Session, _ctx, _instances) -> None:
    """Store the notebook text of new jobs once per content, before the jobs that point at it."""
    texts = {}
    for obj in session.new:
        if isinstance(obj, Job) and obj.__dict__.get("_notebook_text") is not None:
            texts.setdefault(obj.notebook_sha, obj.__dict__["_notebook_text"])
    if texts:
        store_notebooks(session, texts.values())


def store_notebooks(session: Session, texts) -> list[str]:
    """Store notebook texts (each once), marked used now; their keys (``Job.notebook_sha``). For bulk inserts
    of job rows (``insert(Job)``), which set ``notebook_sha`` themselves; ``Job(notebook=...)`` calls it."""
    now = utcnow()
    by_sha = {notebook_sha(t): t for t in texts}
    rows = [{"sha256": sha, "text": text, "size": len(text.encode("utf-8", "surrogatepass")), "used_at": now}
            for sha, text in by_sha.items()]
    if not rows:
        return []
    dialect = session.get_bind().dialect.name
    if dialect in ("postgresql", "sqlite"):
        # An upsert: a notebook stored already is only marked used now (two replicas submitting the same
        # notebook at once do not collide, and a cleanup running meanwhile keeps it: it waits on this row).
        mod = __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["insert"])
        stmt = mod.insert(Notebook)
        session.execute(stmt.on_conflict_do_update(index_elements=["sha256"], set_={"used_at": stmt.excluded.used_at}),
                        rows)
    else:
        have = set(session.execute(select(Notebook.sha256).where(Notebook.sha256.in_(list(by_sha)))).scalars())
        session.execute(Notebook.__table__.insert(), [r for r in rows if r["sha256"] not in have])
    return list(by_sha)
