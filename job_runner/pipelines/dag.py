"""The run of a pipeline as a pure state machine (Argo's DAG semantics), with no database and no clock.

A run has one *node* per task, or one per value of a task's ``fan_out`` (``train[0]``, ``train[1]``...).
Node states: ``waiting`` -> ``queued`` (its job submitted) -> ``running`` -> ``succeeded`` | ``failed``;
``skipped`` (never started: an upstream node failed, or fail-fast stopped the run); ``cancelled``.

- A node starts when every node of every task it ``depends`` on succeeded.
- A failed attempt with retries left (``retries``: Argo's retryStrategy.limit) starts again, even after
  another branch failed: the node has not failed yet.
- ``fail_fast`` (default on, Argo's ``failFast``): once a node has failed, no new node starts; the running
  ones finish; then the rest are ``skipped`` and the run is ``failed``. Off: independent branches go on,
  only the failed node's descendants are skipped.
- ``parallelism``: nodes queued or running at once, in the run and per fan-out task.
- ``retry(key)``: a failed node (or every failed node of a task) gets one more attempt budget, the nodes
  skipped because of it wait again, and the run goes on; what succeeded is kept.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .spec import Pipeline

WAITING, QUEUED, RUNNING, SUCCEEDED, FAILED, SKIPPED, CANCELLED = (
    "waiting", "queued", "running", "succeeded", "failed", "skipped", "cancelled")
ACTIVE = (QUEUED, RUNNING)
FINAL = (SUCCEEDED, FAILED, SKIPPED, CANCELLED)
RUN_RUNNING, RUN_SUCCEEDED, RUN_FAILED, RUN_CANCELLED = "running", "succeeded", "failed", "cancelled"


@dataclass
class Node:
    key: str
    task: str
    index: int | None = None
    state: str = WAITING
    attempts: int = 0  # jobs submitted for this node
    budget: int = 1  # attempts allowed (1 + retries, + 1 per manual retry)
    message: str | None = None


def node_key(task: str, index: int | None) -> str:
    return task if index is None else f"{task}[{index}]"


def expand(p: Pipeline) -> list[Node]:
    """The nodes of a new run, in the pipeline's topological order."""
    out = []
    for name in p.order():
        t = p.tasks[name]
        indexes = range(len(t.fan_out["values"])) if t.fan_out else [None]
        out += [Node(node_key(name, i), name, i, budget=1 + t.retries) for i in indexes]
    return out


@dataclass
class Plan:
    start: list = field(default_factory=list)  # node keys to submit now (a new attempt each)
    skip: dict = field(default_factory=dict)  # node key -> why it will not run
    state: str = RUN_RUNNING  # the run's state after this step


def _failed_final(n: Node) -> bool:
    return n.state == FAILED and n.attempts >= n.budget


def step(p: Pipeline, nodes: dict, cancelled: bool = False) -> Plan:
    """What to do now, given every node's state (``nodes``: key -> Node). Pure: the caller writes the result
    (the new states) and then submits the jobs of ``plan.start``."""
    plan = Plan()
    by_task: dict = {}
    for n in nodes.values():
        by_task.setdefault(n.task, []).append(n)
    active = [n for n in nodes.values() if n.state in ACTIVE]
    failed = [n for n in nodes.values() if _failed_final(n)]
    halted = cancelled or (p.fail_fast and bool(failed))
    running_now = len(active)
    per_task = {t: sum(1 for n in ns if n.state in ACTIVE) for t, ns in by_task.items()}
    dead: set = set()  # tasks some node of which will never succeed (now)
    for t, ns in by_task.items():
        if any(_failed_final(n) or n.state in (SKIPPED, CANCELLED) for n in ns):
            dead.add(t)
    for name in p.order():
        t = p.tasks[name]
        for n in sorted(by_task.get(name, []), key=lambda n: -1 if n.index is None else n.index):
            retry = n.state == FAILED and n.attempts < n.budget
            if not (n.state == WAITING or retry):
                continue
            if cancelled:
                plan.skip[n.key] = "the run was cancelled"
                continue
            if not retry:
                bad = [d for d in t.depends if d in dead]
                if bad:
                    plan.skip[n.key] = f"upstream task {bad[0]!r} did not succeed"
                    dead.add(name)
                    continue
                if not all(m.state == SUCCEEDED for d in t.depends for m in by_task.get(d, [])):
                    continue
                if halted:
                    continue  # fail-fast: nothing new starts; skipped once the running ones finished
            if p.parallelism is not None and running_now >= p.parallelism:
                continue
            if t.fan_out and t.fan_out.get("parallelism") and per_task.get(name, 0) >= t.fan_out["parallelism"]:
                continue
            plan.start.append(n.key)
            running_now += 1
            per_task[name] = per_task.get(name, 0) + 1
    if running_now == 0:
        for n in nodes.values():
            if n.state == WAITING and n.key not in plan.skip:
                plan.skip[n.key] = ("the run was cancelled" if cancelled else
                                    "not started: fail_fast stopped the run after a failure")
    after = {k: (SKIPPED if k in plan.skip else (QUEUED if k in plan.start else n.state)) for k, n in nodes.items()}
    if running_now == 0 and not plan.start:
        if cancelled:
            plan.state = RUN_CANCELLED
        elif all(s == SUCCEEDED for s in after.values()):
            plan.state = RUN_SUCCEEDED
        elif all(s in FINAL for s in after.values()) or failed:
            plan.state = RUN_FAILED
    return plan


def retry(p: Pipeline, nodes: dict, key: str) -> list:
    """Give the failed node ``key`` (or every failed node of task ``key``) one more attempt; the skipped
    nodes wait again. Returns the keys retried (empty: nothing failed there)."""
    targets = [n for n in nodes.values() if (n.key == key or n.task == key) and _failed_final(n)]
    for n in targets:
        n.budget = n.attempts + 1
        n.message = None
    if targets:
        for n in nodes.values():
            if n.state == SKIPPED:
                n.state = WAITING
                n.message = None
    return [n.key for n in targets]
