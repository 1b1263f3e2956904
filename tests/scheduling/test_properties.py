"""Invariants under random sequences of requests (hypothesis)."""
import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job_runner.scheduling import (ANY, GPU_MODELS, ClusterState, Quota, Scheduler, SliceRequest, Tenant,
                                   make_policy)

from .helpers import inventory, job

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

requests = st.one_of(
    st.builds(lambda n: SliceRequest("whole", gpus=n, cpu_milli=1000), st.integers(1, 4)),
    st.builds(lambda m: SliceRequest("share", gpu_milli=m, cpu_milli=500), st.integers(50, 1000)),
    st.builds(lambda c: SliceRequest("cpu", cpu_milli=c), st.integers(100, 8000)),
)
ops = st.lists(st.tuples(st.sampled_from(["submit", "submit", "schedule", "release"]), st.integers(0, 2),
                         requests, st.sampled_from(["job", "server"])), min_size=5, max_size=40)


def check_capacity(s: Scheduler):
    state = s.state
    gpu = state.gpu_cap > 0
    assert (state.gpu_free[gpu] >= 0).all() and (state.gpu_free[gpu] <= 1000).all()
    assert (state.cpu_free >= 0).all() and (state.mem_free >= 0).all()
    # the state agrees with the running list
    fresh = ClusterState(s.inventory)
    for r in s.running.values():
        fresh.take(r.workload.request, r.assignment)
    assert np.array_equal(fresh.gpu_free, state.gpu_free) and np.array_equal(fresh.cpu_free, state.cpu_free)
    # the incrementally kept usage agrees with the running list too
    held = {}
    for r in s.running.values():
        held[r.workload.tenant] = held.get(r.workload.tenant, 0) + r.charge.gpu_milli
    for name, u in s.usage().items():
        assert u.group(ANY).gpu_milli == held.get(name, 0)
        assert u.pending == sum(1 for w in s.pending.values() if w.tenant == name)
    assert s.consistent()  # every figure of the ledger equals a recount of its entries


def play(s, ops):
    """Apply ``ops`` to scheduler ``s`` one by one, yielding it after each (the checks run in between)."""
    now = 0.0
    for op, t, req, kind in ops:
        now += 1
        if op == "submit":
            s.submit(job(f"t{t}", req, kind=kind))
        elif op == "schedule":
            s.schedule(now)
        elif s.running:
            s.release(sorted(s.running)[t % len(s.running)])
        yield s


@SETTINGS
@given(ops=ops, policy=st.sampled_from(["first-fit", "best-fit", "fgd", "default"]),
       quotas=st.lists(st.integers(500, 6000), min_size=3, max_size=3))
def test_never_over_quota_nor_capacity(ops, policy, quotas):
    ts = [Tenant(f"t{k}", {ANY: Quota(gpu_milli=q, cpu_milli=20000)}) for k, q in enumerate(quotas)]
    s = Scheduler(inventory(nodes=2, gpus=4), ts, policy=policy)
    for s in play(s, ops):
        for k, q in enumerate(quotas):
            used = s.usage(f"t{k}").group(ANY)
            assert used.gpu_milli <= q and used.cpu_milli <= 20000
        check_capacity(s)


@SETTINGS
@given(ops=ops, limit=st.sampled_from([None, 0, 1000, 3000]))
def test_cohort_never_exceeds_its_quotas(ops, limit):
    ts = [Tenant(f"t{k}", {ANY: Quota(gpu_milli=2000)}, cohort="lab", borrowing_limit_milli=limit) for k in range(3)]
    s = Scheduler(inventory(nodes=2, gpus=4), ts)
    for s in play(s, ops):
        table = s.usage()
        assert sum(table[f"t{k}"].group(ANY).gpu_milli for k in range(3)) <= 6000
        for k in range(3):
            u = table[f"t{k}"]
            assert u.group(ANY).gpu_milli <= 2000 + (limit if limit is not None else 4000)
            assert u.borrowed_milli <= (limit if limit is not None else 4000)
        check_capacity(s)


@SETTINGS
@given(ops=st.lists(st.tuples(st.sampled_from(["submit", "submit", "schedule", "release", "cancel", "requeue",
                                               "restore"]), st.integers(0, 2), requests,
                              st.sampled_from(["job", "server"])), min_size=5, max_size=40))
def test_usage_is_derived_from_the_entries(ops):
    """Whatever the calls, the usage figures are those of the pending and running entries."""
    ts = [Tenant(f"t{k}", {ANY: Quota(gpu_milli=3000, max_queued_jobs=3, max_servers_per_user=1)}, cohort="lab",
                 borrowing_limit_milli=1000) for k in range(3)]
    s = Scheduler(inventory(nodes=2, gpus=4), ts)
    now = 0.0
    for op, t, req, kind in ops:
        now += 1
        known = sorted(s.pending) + sorted(s.running)
        pick = known[t % len(known)] if known else None
        if op == "submit":
            s.submit(job(f"t{t}", req, kind=kind, user=f"u{t % 2}"))
        elif op == "schedule":
            s.schedule(now)
        elif op == "release" and s.running:
            s.release(sorted(s.running)[t % len(s.running)])
        elif op == "cancel" and pick:
            assert s.cancel(pick)
        elif op == "requeue" and pick:
            w = s.pending[pick] if pick in s.pending else s.running[pick].workload
            assert s.requeue(w).ok and pick in s.pending and pick not in s.running
        elif op == "restore":
            s.restore([(r.workload, r.assignment) for r in s.running.values()])
        check_capacity(s)


MIG_CASES = [(m, p) for m in ("A100-40GB", "A100-80GB", "H100-80GB", "H200", "A30")
             for p in GPU_MODELS[m].mig.profiles]


@SETTINGS
@given(picks=st.lists(st.sampled_from(MIG_CASES), min_size=1, max_size=30),
       policy=st.sampled_from(["first-fit", "default"]), releases=st.lists(st.integers(0, 50), max_size=5))
def test_mig_placement_is_always_legal(picks, policy, releases):
    from job_runner.scheduling import Inventory
    inv = Inventory.from_config([{"name": m, "cpu_milli": 10 ** 6, "memory_mib": 10 ** 7, "gpus": 2, "gpu_model": m,
                                  "mig_enabled": True} for m in ("A100-40GB", "A100-80GB", "H100-80GB", "H200", "A30")])
    state = ClusterState(inv)
    pol = make_policy(policy)
    held = []
    for k, (model, prof) in enumerate(picks):
        req = SliceRequest("mig", mig_profile=prof, gpu_models=(model,))
        p = pol.place(state, req)
        if p is not None:
            held.append((req, state.allocate(req, p)))
        if k in releases and held:
            req0, a0 = held.pop(0)
            state.free(req0, a0)
    per_gpu = {}
    for req, a in held:
        node = inv.node(a.node)
        gpu = node.gpus[a.mig[0]]
        spec = GPU_MODELS[gpu.model].mig
        prof = spec.profile(a.mig[1])
        assert a.mig[2] in prof.starts and gpu.model in req.gpu_models
        used, counts = per_gpu.get((a.node, a.mig[0]), (0, {}))
        assert not used & prof.mask(a.mig[2]), "overlapping MIG instances"
        counts[prof.name] = counts.get(prof.name, 0) + 1
        assert counts[prof.name] <= prof.max_instances
        per_gpu[(a.node, a.mig[0])] = (used | prof.mask(a.mig[2]), counts)


@SETTINGS
@given(prios=st.lists(st.sampled_from(["normal", "emergency", "high"]), min_size=1, max_size=20),
       n=st.integers(1, 3))
def test_emergency_before_normal(prios, n):
    s = Scheduler(inventory(nodes=1, gpus=4), [Tenant("a", {}, emergency_users={"boss"})])
    for k, p in enumerate(prios):
        s.submit(job("a", SliceRequest("whole", gpus=n), user="boss", priority=p, at=k))
    d = s.schedule(100)
    rank = {"normal": 0, "high": 1, "emergency": 2}
    lowest_admitted = min((rank[w.priority] for w, _ in d.admitted), default=3)
    highest_waiting = max((rank[p.workload.priority] for p in d.pending), default=-1)
    assert highest_waiting <= lowest_admitted  # identical requests: nobody lower jumps a higher one
    assert len(d.admitted) == min(len(prios), 4 // n)


@SETTINGS
@given(weights=st.lists(st.sampled_from([1.0, 2.0, 3.0]), min_size=2, max_size=4), milli=st.sampled_from([250, 500, 1000]))
def test_fair_share_converges_to_weights(weights, milli):
    ts = [Tenant(f"t{k}", {}, weight=w) for k, w in enumerate(weights)]
    s = Scheduler(inventory(nodes=2, gpus=8), ts)
    for k in range(len(weights)):
        for _ in range(200):
            s.submit(job(f"t{k}", SliceRequest("share", gpu_milli=milli)))
    s.schedule(0)
    share = [s.usage(f"t{k}").group(ANY).gpu_milli / w for k, w in enumerate(weights)]
    # weighted shares equal up to one request (divided by the smallest weight)
    assert max(share) - min(share) <= milli / min(weights) + 1e-9
