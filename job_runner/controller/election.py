"""Which replica runs the scheduling loop: exactly one *leader* at a time.

- PostgreSQL: a session-level advisory lock (``pg_try_advisory_lock``) held on a dedicated connection. The
  server releases it the moment that connection dies, so a SIGKILLed leader is replaced at the next tick of
  another replica.
- SQLite: a lease row (``leases``) renewed every tick and taken over after ``ttl_s``.

Every job state change is also a compare-and-set on the job's row (``job_runner.db.ops``), so even two
replicas that both believed they lead (a paused process whose lease ran out) cannot start one attempt of a
job twice: only one wins ``queued -> admitted``. The controller calls this from its worker thread only.
"""
from __future__ import annotations

import time

from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError, OperationalError

from job_runner.db import Lease

LEADER_LOCK_KEY = 0x41495355  # PostgreSQL advisory lock key of the scheduling loop


class LeaderElection:
    """Who runs the scheduling loop (see the module docstring)."""

    def __init__(self, db, replica_id: str, ttl_s: float, log):
        self.db = db
        self.replica_id = replica_id
        self.ttl_s = ttl_s
        self.log = log
        self._conn = None
        self.is_leader = False

    def check(self) -> bool:
        try:
            self.is_leader = self._check_pg() if self.db.is_postgres else self._check_lease()
        except OperationalError as e:
            self.log.warning("leader election: database error: %s", e)
            self._drop()
            self.is_leader = False
        return self.is_leader

    def _drop(self):
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 - the connection is dead anyway
                pass
            self._conn = None

    def _check_pg(self) -> bool:
        if self._conn is not None:
            self._conn.execute(text("SELECT 1"))
            return True
        conn = self.db.engine.connect()
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LEADER_LOCK_KEY}).scalar()
        conn.commit()
        if got:
            self._conn = conn
            return True
        conn.close()
        return False

    def _check_lease(self) -> bool:
        now = time.time()
        with self.db.session() as s:
            res = s.execute(
                update(Lease).where(Lease.name == "scheduler",
                                    (Lease.holder == self.replica_id) | (Lease.expires_at < now))
                .values(holder=self.replica_id, expires_at=now + self.ttl_s)
            )
            if res.rowcount == 1:
                return True
            if s.get(Lease, "scheduler") is None:
                s.add(Lease(name="scheduler", holder=self.replica_id, expires_at=now + self.ttl_s))
                try:
                    s.flush()
                    return True
                except IntegrityError:
                    s.rollback()
            return False

    def release(self):
        if self.db.is_postgres:
            self._drop()
        elif self.is_leader:
            with self.db.session() as s:
                s.execute(update(Lease).where(Lease.name == "scheduler", Lease.holder == self.replica_id)
                          .values(expires_at=0))
        self.is_leader = False

