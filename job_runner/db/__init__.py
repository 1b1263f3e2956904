"""Database access of the job service: engine, sessions and migrations (alembic).

`open_database(url)` returns a `Database` whose schema is at the newest alembic revision.
SQLite (a file; the default) and PostgreSQL (``postgresql://...``, psycopg2) are supported.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from .models import (  # noqa: F401  (re-exported)
    ACTIVE_STATES,
    ADMITTED,
    ALLOC_ALLOCATED,
    ALLOC_PENDING,
    ALLOC_RELEASED,
    CANCELLED,
    FAILED,
    FINAL_STATES,
    JOB_STATES,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    Allocation,
    Base,
    Job,
    JobEvent,
    Lease,
    Notebook,
    RetentionRun,
    TenantRow,
    notebook_sha,
    store_notebooks,
    utcnow,
)

# --- accounting (issue 15 A) ---
from . import accounting as _accounting  # noqa: F401,E402  (usage/price/budget tables in the metadata)
# --- end accounting ---
# --- storage + environments (issue 15 C) ---
from . import resources as _resources  # noqa: F401,E402  (storage/dataset/environment tables)
# --- end storage + environments ---
# --- GPU monitoring + culling (issue 15 B) ---
from . import monitoring as _monitoring  # noqa: F401,E402  (samples/idle/alarm tables in the metadata)
# --- end GPU monitoring ---
# --- pipelines + schedules (issue 14) ---
from . import pipelines as _pipelines  # noqa: F401,E402  (pipeline/schedule tables in the metadata)
# --- end pipelines + schedules ---

# --- experiments (issue 13): its tables in the metadata
from . import experiments as _experiments  # noqa: E402,F401

MIGRATIONS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
# Arbitrary, fixed keys for PostgreSQL advisory locks.
MIGRATION_LOCK_KEY = 0x41495354  # "AIST"


@dataclass
class Database:
    """``session()`` is for anything that writes (on SQLite it takes the write lock at BEGIN, so a
    read-then-write can never fail half-way); ``read()`` is for reads, and may nest inside a session."""

    url: str
    engine: Engine
    sessionmaker: sessionmaker
    read_sessionmaker: sessionmaker = None

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self):
        """A session in a transaction: committed on success, rolled back on error."""
        s: Session = self.sessionmaker()
        try:
            yield s
            s.commit()
        except BaseException:
            s.rollback()
            raise
        finally:
            s.close()

    @contextmanager
    def read(self):
        """A read-only session (SQLite: a deferred transaction, which never waits for writers in WAL mode)."""
        s: Session = (self.read_sessionmaker or self.sessionmaker)()
        try:
            yield s
        finally:
            s.rollback()
            s.close()

    def dispose(self):
        self.engine.dispose()
        if self.read_sessionmaker is not None:
            self.read_sessionmaker.kw["bind"].dispose()


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    # WAL lets readers run while one writer writes; busy_timeout makes writers wait instead of failing.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_begin_immediate(conn):
    # Take SQLite's write lock at BEGIN: a read-then-write transaction can then never fail
    # half-way with "database is locked" and two writers never interleave (see pysqlite docs).
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, immediate: bool = True, **kwargs) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        # Let SQLAlchemy (not pysqlite) emit BEGIN, so that BEGIN IMMEDIATE applies.
        @event.listens_for(engine, "connect")
        def _no_pysqlite_begin(dbapi_conn, _record):
            dbapi_conn.isolation_level = None

        if immediate:
            event.listen(engine, "begin", _sqlite_begin_immediate)
        else:
            event.listen(engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", MIGRATIONS_DIR)
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, url: str, revision: str = "head") -> None:
    """Bring the schema up to `revision` with alembic (serialized across replicas on PostgreSQL)."""
    _migrate(engine, url, revision, "upgrade")


def downgrade(engine: Engine, url: str, revision: str = "base") -> None:
    _migrate(engine, url, revision, "downgrade")


def _migrate(engine: Engine, url: str, revision: str, direction: str) -> None:
    from alembic import command

    cfg = alembic_config(url)
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            getattr(command, direction)(cfg, revision)
            conn.commit()
        finally:
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                conn.commit()


def normalize_url(url: str) -> str:
    """``postgresql://`` means psycopg2 here (the ``postgres`` extra) unless psycopg 3 is installed."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        try:
            import psycopg  # noqa: F401
        except ImportError:
            url = "postgresql+psycopg2://" + url[len("postgresql://"):]
    return url


def open_database(url: str, migrate: bool = True, **engine_kwargs) -> Database:
    url = normalize_url(url)
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    engine = make_engine(url, **engine_kwargs)
    if migrate:
        upgrade(engine, url)
    read_maker = None
    if engine.dialect.name == "sqlite":
        read_maker = sessionmaker(make_engine(url, immediate=False, **engine_kwargs), expire_on_commit=False)
    return Database(url=url, engine=engine, sessionmaker=sessionmaker(engine, expire_on_commit=False),
                    read_sessionmaker=read_maker)
