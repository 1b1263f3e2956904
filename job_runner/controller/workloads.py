"""Typed workload kinds: what a scheduler workload id stands for.

The scheduling core knows workloads by an opaque string id. The controller never reads meaning out of that
string: every id it hands to the core is registered here with its ``WorkloadRef`` (kind + database row id),
and every id the core hands back (admitted, preempted, pending) is looked up here.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from job_runner.db.ops import epoch
from job_runner.scheduling import SliceRequest, Workload

JOB = "job"  # a notebook job: a row of ``jobs``
SERVER = "server"  # a server slice asked for by the hub's spawner: a row of ``allocations``


@dataclass(frozen=True)
class WorkloadRef:
    kind: str  # JOB | SERVER (the core's Workload.kind)
    row_id: int


class Registry:
    """Workload id <-> (kind, row id) for every workload the live scheduler holds (pending or running).
    Entries are added when a workload is handed to the core and dropped when the core lets go of it."""

    def __init__(self):
        self._refs: dict[str, WorkloadRef] = {}

    @staticmethod
    def wid(ref: WorkloadRef) -> str:
        # Unique per (kind, row): the core only compares ids, nothing parses them.
        return f"{ref.kind}-{ref.row_id}"

    def add(self, ref: WorkloadRef) -> str:
        wid = self.wid(ref)
        self._refs[wid] = ref
        return wid

    def ref(self, wid: str) -> WorkloadRef:
        return self._refs[wid]

    def forget(self, wid: str) -> WorkloadRef | None:
        return self._refs.pop(wid, None)

    def of_kind(self, kind: str) -> set[int]:
        return {r.row_id for r in self._refs.values() if r.kind == kind}

    def clear(self):
        self._refs.clear()

    def __contains__(self, wid: str) -> bool:
        return wid in self._refs


def job_workload(row, wid: str, history=None) -> Workload:
    """``history``: (shortest, typical, longest) past run time (job_runner.db.history), used when the
    submission gave no expected duration."""
    expected, spread = row.expected_duration_s, None
    if expected is None and history is not None:
        expected, spread = history[1], (history[0], history[2])
    return Workload(wid, row.tenant, row.user, JOB, row.priority or "normal",
                    SliceRequest.from_dict(row.request or {"kind": "cpu"}), epoch(row.created_at) or time.time(),
                    expected, spread)


def server_workload(row, wid: str) -> Workload:
    return Workload(wid, row.tenant, row.user, SERVER, row.priority or "normal",
                    SliceRequest.from_dict(row.request or {"kind": "cpu"}), epoch(row.created_at) or time.time())
