"""The ledger (usage derived from the entries), quotas with cohorts (borrowing, reclaim), requeue and
preemption, on small pools (fast: no trace, no hypothesis)."""
import pytest

from job_runner.scheduling import ANY, Assignment, Quota, Scheduler, Tenant
from job_runner.scheduling.ledger import Ledger
from job_runner.scheduling.state import Placement

from .helpers import inventory, job, scheduler, share, tenants, whole


def test_ledger_sums_are_sums_over_its_entries():
    led = Ledger(inventory(nodes=1, gpus=4, model="T4"), default_job_s=3600, default_server_s=7200)
    j, srv = job("a", whole(2)), job("a", share(250), kind="server", user="ann")
    led.queue(j)
    led.queue(j)  # the same id again replaces, never counts twice
    led.queue(srv)
    x = led.tally("a")
    assert (x.pending, x.queued_jobs, x.servers("ann")) == (2, 1, 1)
    led.start(j, j.request, Placement(0, (0, 1)), now=5.0)
    x = led.tally("a")
    assert (x.pending, x.queued_jobs, x.running_jobs) == (1, 0, 1)
    assert x.group(ANY).gpu_milli == 2000 and x.group("T4").gpu_milli == 2000
    assert led.consistent()
    assert led.stop(j.id).started_at == 5.0 and led.stop(j.id) is None
    assert led.unqueue(srv.id) is srv and led.unqueue(srv.id) is None
    assert led.tally("a").normalised() == led.tally("nobody").normalised()
    assert led.tenants() == set() and led.consistent()
    assert int(led.state.gpu_free[0].sum()) == 4000  # the capacity went back with the entry


def test_views_are_read_only_and_usage_follows_every_call():
    ts = [Tenant("a", {ANY: Quota(gpu_milli=3000, max_queued_jobs=2, max_servers_per_user=1)})]
    s = scheduler(inv=inventory(nodes=1, gpus=4), ts=ts)
    ws = [job("a", whole(1)) for _ in range(2)]
    for w in ws:
        assert s.submit(w).ok
    with pytest.raises(TypeError):
        s.pending["x"] = ws[0]  # only the scheduler's calls change the ledger
    with pytest.raises(TypeError):
        del s.running["x"]
    assert s.usage("a").queued_jobs == 2 and s.usage("a").pending == 2
    s.schedule(0)
    u = s.usage("a")
    assert (u.queued_jobs, u.running_jobs, u.group(ANY).gpu_milli) == (0, 2, 2000)
    srv = job("a", share(500), kind="server", user="ann")
    assert s.submit(srv).ok
    assert s.usage("a").servers_by_user == {"ann": 1}  # pending servers count against the limit
    assert s.submit(job("a", share(100), kind="server", user="ann")).reason == "server_limit"
    s.schedule(1)
    assert s.usage("a").servers_by_user == {"ann": 1} and s.usage("a").group(ANY).gpu_milli == 2500
    running = [(r.workload, r.assignment) for r in s.running.values()]
    s.restore(running)
    assert s.usage("a").group(ANY).gpu_milli == 2500 and s.consistent()
    s.release(srv.id)
    assert s.usage("a").servers_by_user == {} and s.quota_left("a")["gpu_milli"] == 1000
    assert s.consistent()


def test_requeue_gives_an_admission_back_and_keeps_the_place():
    s = scheduler(inv=inventory(nodes=1, gpus=1), ts=[Tenant("a", {ANY: Quota(max_queued_jobs=1)})])
    first, second = job("a", whole(1), at=1), job("a", whole(1), at=2)
    assert s.submit(first).ok
    assert s.submit(second).reason == "queue_full"
    assert s.requeue(second).ok  # accepted earlier (the job system enforced the limit then)
    d = s.schedule(10)
    assert [w.id for w, _ in d.admitted] == [first.id]
    assert s.requeue(first).ok  # admitted but not written by the caller: back in the queue
    assert first.id in s.pending and not s.running and s.usage("a").running_jobs == 0
    d = s.schedule(11)
    assert [w.id for w, _ in d.admitted] == [first.id]  # still ahead of the later one
    assert [p.workload.id for p in d.pending] == [second.id]
    assert s.requeue(job("zz", whole(1))).reason == "unknown_tenant"  # other checks still apply
    assert s.consistent()


def test_cohort_borrowing_respects_the_limit_and_what_is_idle():
    ts = [Tenant("a", {ANY: Quota(gpu_milli=2000)}, cohort="lab", borrowing_limit_milli=3000),
          Tenant("b", {ANY: Quota(gpu_milli=1000)}, cohort="lab"),
          Tenant("solo", {ANY: Quota(gpu_milli=1000)})]
    s = scheduler(inv=inventory(nodes=1, gpus=8), ts=ts)
    assert s.quota_left("a")["borrowable_milli"] == 1000  # b's idle quota; the limit is higher
    assert s.quota_left("solo")["borrowable_milli"] == 0  # no cohort, nothing to borrow
    assert s.check(job("a", whole(3))).ok  # own 2000 + b's 1000
    assert s.check(job("a", whole(4))).reason == "over_quota"
    assert s.check(job("a", whole(3), kind="server")).reason == "over_quota"  # servers never borrow
    for _ in range(4):
        s.submit(job("a", whole(1)))
    d = s.schedule(0)
    assert len(d.admitted) == 3
    assert s.usage("a").borrowed_milli == 1000 and s.quota_left("a")["borrowable_milli"] == 0
    assert s.quota_left("b")["gpu_milli"] == 1000  # b's own quota is still its own ...
    assert s.quota_left("b")["borrowable_milli"] == 0  # ... but nothing is idle to borrow beyond it


def test_borrowable_is_what_admission_accepts():
    """quota_left's borrowable_milli and admission use the same cohort totals: a job of exactly
    own-left + borrowable starts, one of a share more does not."""
    def pool():
        ts = [Tenant(n, {ANY: Quota(gpu_milli=2000)}, cohort="lab") for n in ("a", "b", "c")]
        s = scheduler(inv=inventory(nodes=2, gpus=8), ts=ts)
        for _ in range(3):
            s.submit(job("b", whole(1)))  # b borrows 1000
        s.submit(job("a", whole(1)))
        s.schedule(0)
        return s
    s = pool()
    left = s.quota_left("a")
    assert (left["gpu_milli"], left["borrowable_milli"]) == (1000, 1000)  # c's 2000 idle, 1000 lent to b
    w = job("a", whole(2))
    s.submit(w)
    assert [x.id for x, _ in s.schedule(1).admitted] == [w.id]
    s = pool()
    s.submit(job("a", whole(3)))
    assert not s.schedule(1).admitted


def test_reclaim_takes_back_the_youngest_borrowed_job_first():
    ts = [Tenant("a", {ANY: Quota(gpu_milli=2000)}, cohort="lab"),
          Tenant("b", {ANY: Quota(gpu_milli=2000)}, cohort="lab")]
    s = scheduler(inv=inventory(nodes=1, gpus=8), ts=ts)
    bj = [job("b", whole(1)) for _ in range(4)]
    for k, w in enumerate(bj):
        s.submit(w)
        s.schedule(float(k))  # one by one: bj[2] and bj[3] borrow, bj[3] is the youngest
    assert [s.running[w.id].borrowed_milli for w in bj] == [0, 0, 1000, 1000]
    s.submit(job("a", whole(1)))
    d = s.schedule(10)
    assert d.preempt == [bj[3].id] and len(d.admitted) == 1
    assert s.usage("b").borrowed_milli == 1000 and s.consistent()
    s.submit(job("a", whole(1)))
    assert s.schedule(11).preempt == [bj[2].id]  # the next youngest borrowed one
    s.submit(job("a", whole(1)))  # beyond its own quota, and nothing of the cohort is idle
    d = s.schedule(12)
    assert not d.admitted and not d.preempt and d.pending[0].reason == "quota"
    assert s.usage("b").borrowed_milli == 0 and s.usage("b").group(ANY).gpu_milli == 2000


def test_restore_infers_borrowing_so_reclaim_still_works():
    ts = [Tenant("a", {ANY: Quota(gpu_milli=1000)}, cohort="lab"),
          Tenant("b", {ANY: Quota(gpu_milli=1000)}, cohort="lab")]
    s = scheduler(inv=inventory(nodes=1, gpus=2), ts=ts)
    old, young = job("b", whole(1), at=1), job("b", whole(1), at=2)
    node = s.inventory.nodes[0].name
    s.restore([(old, Assignment(node, (0,), 1000)), (young, Assignment(node, (1,), 1000))])
    assert s.usage("b").borrowed_milli == 1000 and s.running[young.id].borrowed
    s.submit(job("a", whole(1)))
    assert s.schedule(5).preempt == [young.id]


def test_emergency_preempts_as_many_jobs_as_one_node_needs():
    s = Scheduler(inventory(nodes=2, gpus=2), [Tenant("a", {}, emergency_users={"boss"})], preemption=True)
    jobs = [job("a", whole(1), at=k) for k in range(4)]
    for w in jobs:
        s.submit(w)
    s.schedule(5)
    e = job("a", whole(2), user="boss", priority="emergency", at=6)
    s.submit(e)
    d = s.schedule(7)
    assert [w.id for w, _ in d.admitted] == [e.id]
    assert len(d.preempt) == 2  # both jobs of one node, not one of each
    node = s.running[e.id].assignment.node
    assert all(r.assignment.node != node for r in s.running.values() if r.workload.id != e.id)
    assert s.consistent()


def test_tenants_changed_while_work_runs():
    s = scheduler(ts=tenants(a=4000, b=None))
    for _ in range(3):
        s.submit(job("a", whole(1)))
    s.schedule(0)
    s.set_tenants(tenants(a=1000, b=None))  # quota cut below what runs: running work is kept
    assert s.usage("a").group(ANY).gpu_milli == 3000 and s.quota_left("a")["gpu_milli"] == 0
    s.submit(job("a", whole(1)))
    d = s.schedule(1)
    assert not d.admitted and d.pending[0].reason == "quota"
