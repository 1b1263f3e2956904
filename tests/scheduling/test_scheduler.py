import pytest

from job_runner.scheduling import (Assignment, ProfileCatalog, Quota, Scheduler, SliceRequest, Tenant, TimeWindow)

from .helpers import inventory, job, scheduler, share, tenants, whole

SAT_NOON = 1764417600.0  # 2025-11-29 12:00 UTC, a Saturday
MON_NOON = SAT_NOON + 2 * 86400


def test_check_verdicts():
    ts = [Tenant("a", {"any": Quota(gpu_milli=2000, max_queued_jobs=1)}, emergency_users={"boss"})]
    s = scheduler(ts=ts)
    assert s.check(job("zz", whole(1))).reason == "unknown_tenant"
    assert s.check(job("a", whole(1), user="x", priority="emergency")).reason == "forbidden"
    assert s.check(job("a", whole(1), user="boss", priority="emergency")).ok
    assert s.check(job("a", whole(4))).reason == "over_quota"
    assert s.check(job("a", whole(1, gpu_models=("T4",)))).reason == "never_fits"
    assert s.submit(job("a", whole(1))).ok
    v = s.submit(job("a", whole(1)))
    assert v.reason == "queue_full" and "queued" in v.message


def test_quota_is_hard_and_release_reuses_at_once():
    s = scheduler(ts=tenants(a=2500))
    ws = [job("a", whole(1)) for _ in range(4)]
    for w in ws:
        assert s.submit(w).ok
    d = s.schedule(0)
    assert [w.id for w, _ in d.admitted] == [ws[0].id, ws[1].id]
    assert {p.reason for p in d.pending} == {"quota"}
    assert s.quota_left("a")["gpu_milli"] == 500
    assert s.release(ws[0].id)
    d = s.schedule(1)
    assert [w.id for w, _ in d.admitted] == [ws[2].id]  # FIFO within the tenant


def test_emergency_first_then_high_then_normal():
    s = scheduler(inv=inventory(nodes=1, gpus=2), ts=[Tenant("a", {}, emergency_users={"boss"}, high_users={"u"})])
    n = job("a", whole(1), at=0)
    h = job("a", whole(1), priority="high", at=1)
    e = job("a", whole(1), user="boss", priority="emergency", at=2)
    for w in (n, h, e):
        s.submit(w)
    d = s.schedule(10)
    assert [w.id for w, _ in d.admitted] == [e.id, h.id]
    assert d.pending[0].workload.id == n.id and d.pending[0].reason == "capacity"


def test_weighted_dominant_share_orders_tenants():
    ts = [Tenant("hog", {}), Tenant("new", {}), Tenant("heavy", {}, weight=3)]
    s = scheduler(inv=inventory(nodes=1, gpus=8), ts=ts)
    for _ in range(4):
        s.submit(job("hog", whole(1)))
    s.schedule(0)  # hog holds 4 of 8 GPUs
    for t in ("hog", "new", "heavy"):
        for _ in range(4):
            s.submit(job(t, whole(1)))
    d = s.schedule(1)
    got = [w.tenant for w, _ in d.admitted]
    assert got.count("hog") == 0  # the tenant holding half the pool waits behind the others
    assert got.count("heavy") >= got.count("new")


def test_estimated_start_from_expected_ends():
    s = scheduler(inv=inventory(nodes=1, gpus=1), ts=tenants(a=None))
    first = job("a", whole(1), duration=600)
    s.submit(first)
    s.schedule(1000)
    w2, w3 = job("a", whole(1), duration=600), job("a", whole(1), duration=600)
    s.submit(w2)
    s.submit(w3)
    d = s.schedule(1100)
    est = {p.workload.id: p for p in d.pending}
    assert est[w2.id].position == 1 and est[w2.id].estimated_start == pytest.approx(1600)
    assert est[w3.id].position == 2 and est[w3.id].estimated_start > est[w2.id].estimated_start


def test_time_window_nights_and_weekends():
    ts = [Tenant("batch", {}, windows=("sat-sun 0-24", "mon-fri 20-6"))]
    s = scheduler(ts=ts)
    w = job("batch", whole(1))
    s.submit(w)
    d = s.schedule(MON_NOON)
    assert not d.admitted and d.pending[0].reason == "window"
    assert d.pending[0].estimated_start == MON_NOON + 8 * 3600  # Monday 20:00
    nights = TimeWindow.parse("mon-fri 20-6")
    assert nights.contains(MON_NOON + 17 * 3600) and not nights.contains(MON_NOON + 18 * 3600)  # Tue 05:00 / 06:00
    d = s.schedule(SAT_NOON)
    assert [x.id for x, _ in d.admitted] == [w.id]


def test_emergency_preempts_jobs_not_servers():
    inv = inventory(nodes=1, gpus=2)
    ts = [Tenant("a", {}, emergency_users={"boss"})]
    s = Scheduler(inv, ts, preemption=True)
    server, j = job("a", whole(1), kind="server", at=0), job("a", whole(1), at=1)
    s.submit(server)
    s.submit(j)
    s.schedule(5)
    e = job("a", whole(1), user="boss", priority="emergency")
    s.submit(e)
    d = s.schedule(6)
    assert d.preempt == [j.id] and [w.id for w, _ in d.admitted] == [e.id]
    assert server.id in s.running and j.id not in s.running
    # without preemption the emergency waits
    s2 = Scheduler(inv, ts)
    for w in (server, j):
        s2.submit(w)
    s2.schedule(5)
    s2.submit(e)
    d = s2.schedule(6)
    assert not d.admitted and not d.preempt


def test_cohort_borrowing_and_reclaim():
    ts = [Tenant("a", {"any": Quota(gpu_milli=2000)}, cohort="lab"),
          Tenant("b", {"any": Quota(gpu_milli=2000)}, cohort="lab", borrowing_limit_milli=1000)]
    s = scheduler(inv=inventory(nodes=1, gpus=8), ts=ts)
    bj = [job("b", whole(1), at=k) for k in range(4)]
    for w in bj:
        s.submit(w)
    d = s.schedule(10)
    assert len(d.admitted) == 3  # 2 own + 1 borrowed (limit 1000)
    assert s.usage("b").borrowed_milli == 1000
    server = job("b", whole(1), kind="server")
    s.submit(server)
    assert not s.schedule(11).admitted  # servers never borrow
    s.cancel(server.id)
    aj = [job("a", whole(1)) for _ in range(2)]
    for w in aj:
        s.submit(w)
    d = s.schedule(12)
    assert {w.id for w, _ in d.admitted} == {w.id for w in aj}
    assert len(d.preempt) == 1 and d.preempt[0] in {w.id for w in bj[:3]}  # the borrowed job goes
    assert s.usage("b").group("any").gpu_milli == 2000


def test_restore_rebuilds_state_and_rejects_conflicts():
    s = scheduler(ts=tenants(a=None))
    ws = [job("a", whole(2)), job("a", share(500))]
    for w in ws:
        s.submit(w)
    d = s.schedule(0)
    running = [(w, Assignment.from_dict(a.to_dict())) for w, a in d.admitted]
    s2 = scheduler(ts=tenants(a=None))
    s2.restore(running)
    assert s2.usage("a").group("any").gpu_milli == 2500
    assert s2.free_capacity(whole(1)) == s.free_capacity(whole(1)) == 5
    with pytest.raises(ValueError, match="cannot restore"):
        s2.restore(running + [(job("a", whole(1)), Assignment("gpu-0", (0,), 1000))])
    assert s2.usage("a").group("any").gpu_milli == 2500  # unchanged after the failed restore


def test_model_quota_groups():
    inv = inventory(nodes=1, gpus=2, model="T4")
    inv.nodes.extend(inventory(nodes=1, gpus=2, model="A100-80GB").nodes)
    inv.nodes[1].name = "a100"
    inv.by_name = {n.name: i for i, n in enumerate(inv.nodes)}
    ts = [Tenant("a", {"any": Quota(gpu_milli=4000), "A100-80GB": Quota("A100-80GB", gpu_milli=1000)})]
    s = Scheduler(inv, ts)
    for _ in range(3):
        s.submit(job("a", whole(1, gpu_models=("A100-80GB",))))
    d = s.schedule(0)
    assert len(d.admitted) == 1 and s.usage("a").group("A100-80GB").gpu_milli == 1000
    assert s.quota_left("a", "A100-80GB")["gpu_milli"] == 0


def test_mig_through_the_scheduler_and_free_capacity():
    s = scheduler(inv=inventory(nodes=0, mig_nodes=1, mig_model="A100-80GB") if False else
                  inventory(nodes=1, gpus=1, mig_nodes=1, mig_model="A100-80GB"), ts=tenants(a=None))
    req = SliceRequest("mig", mig_profile="3g.40gb")
    assert s.free_capacity(req) == 4
    for _ in range(5):
        s.submit(job("a", req))
    d = s.schedule(0)
    assert len(d.admitted) == 4
    slots = sorted(a.mig for _, a in d.admitted)
    assert slots == [(0, "3g.40gb", 0), (0, "3g.40gb", 4), (1, "3g.40gb", 0), (1, "3g.40gb", 4)]


def test_profile_catalog():
    cat = ProfileCatalog.from_config([
        {"slug": "quarter-a100", "display_name": "1/4 A100 · 20 GB", "kind": "share", "gpu_milli": 250,
         "gpu_mem_mib": 20480, "gpu_models": ["A100-80GB"]},
        {"slug": "cpu", "display_name": "CPU only", "request": {"kind": "cpu", "cpu_milli": 2000}, "tenants": ["a"]},
    ])
    assert cat.get("quarter-a100").request.gpu_mem_mib == 20480
    assert [p.slug for p in cat.for_tenant("b")] == ["quarter-a100"]
    with pytest.raises(KeyError):
        cat.get("nope")
    with pytest.raises(ValueError, match="unknown keys"):
        ProfileCatalog.from_config([{"slug": "x", "colour": "red"}])


def test_gpu_memory_caps_limit_shares():
    s = scheduler(inv=inventory(nodes=1, gpus=1, model="A100-40GB"), ts=tenants(a=None))
    req = share(100, gpu_mem_mib=15 * 1024)
    assert s.free_capacity(req) == 2  # 40 GB / 15 GB, although 10 shares of 0.1 would fit by compute


def test_tenant_removed_while_work_is_pending_waits_with_a_reason():
    s = scheduler(ts=tenants(a=None, b=None))
    w = job("b", whole(1))
    s.submit(w)
    s.set_tenants(tenants(a=None))
    d = s.schedule(0)
    assert not d.admitted and d.pending[0].reason == "unknown_tenant"
    assert s.cancel(w.id) and not s.pending


def test_queue_and_server_counters_follow_every_change_of_pending():
    ts = [Tenant("a", {"any": Quota(max_queued_jobs=2, max_servers_per_user=1)})]
    s = scheduler(inv=inventory(nodes=1, gpus=1), ts=ts)
    j1, j2, j3 = (job("a", whole(1)) for _ in range(3))
    assert s.submit(j1).ok and s.submit(j2).ok
    assert s.submit(j3).reason == "queue_full"
    assert s.requeue(j3).ok  # the job queue keeps a row it accepted earlier (limit checked then)
    assert s.usage("a").queued_jobs == 3
    assert s.consistent()
    d = s.schedule(0)
    assert len(d.admitted) == 1
    for w in (j1, j2, j3):
        s.cancel(w.id)
    assert s.submit(job("a", whole(1))).ok and s.submit(job("a", whole(1))).ok
    srv = job("a", share(100), kind="server", user="ann")
    assert s.submit(srv).ok
    assert s.submit(job("a", share(100), kind="server", user="ann")).reason == "server_limit"
    s.cancel(srv.id)
    assert s.submit(job("a", share(100), kind="server", user="ann")).ok


@pytest.mark.parametrize("bad, message", [
    ({"name": "a", "quotas": {"any": {"gpu": 1}}}, "unknown quota fields"),
    ({"name": "a", "colour": "red"}, "unknown fields"),
    ({"name": "a", "quotas": {"any": {"gpu_milli": "lots"}}}, "non-negative integer"),
    ({"name": "a", "quotas": {"any": {"gpu_milli": -1}}}, "non-negative integer"),
    ({"name": "a", "weight": 0}, "weight"),
    ({"name": "a", "windows": ["someday 1-2"]}, "unknown day"),
    ({"quotas": {}}, "needs a name"),
])
def test_tenant_config_errors_are_value_errors_with_the_field(bad, message):
    with pytest.raises(ValueError, match=message):
        Tenant.from_config(bad)


def test_tenant_config_round_trip():
    t = Tenant.from_config({"name": "a", "quotas": {"any": {"gpu_milli": 2000.0}, "T4": {"gpu_milli": 500}},
                            "windows": ["sat-sun 0-24"], "cohort": "lab", "emergency_users": ["boss"]})
    assert t.quota("any").gpu_milli == 2000 and isinstance(t.quota("any").gpu_milli, int)
    assert Tenant.from_config(t.to_dict()) == t


@pytest.mark.parametrize("policy", ["first-fit", "best-fit", "fgd", "default"])
def test_a_node_its_cluster_says_is_down_gets_no_new_work_until_it_is_back(policy):
    """Closes (issue 11, a node lost): the core kept assigning a dead node, so a job lost with it was retried
    there. set_unavailable: no new placement on those nodes (running work kept), kept across a restore."""
    s = scheduler(inv=inventory(nodes=2, gpus=4), ts=tenants(a=None), policy=policy)
    first = job("a", whole(2))
    s.submit(first)
    ((_, a),) = s.schedule(0).admitted
    down, other = a.node, ({"gpu-0", "gpu-1"} - {a.node}).pop()
    assert s.set_unavailable([down, "no-such-node"]) == [down]
    assert s.set_unavailable([down]) == []  # no change
    ws = [job("a", whole(2)) for _ in range(3)]
    for w in ws:
        s.submit(w)
    d = s.schedule(1)
    assert [x.node for _, x in d.admitted] == [other, other]  # 2 free GPUs left on the down node: unused
    assert [p.workload.id for p in d.pending] == [ws[2].id]
    assert s.free_capacity(whole(2)) == 0
    assert first.id in s.running  # what runs there is the executor's to end
    s.release(first.id)
    assert s.schedule(2).admitted == []  # the whole node free now, still down
    s.restore([(r.workload, r.assignment) for r in s.running.values()])
    assert s.schedule(3).admitted == []  # a restore (a new leader) keeps it down
    assert s.set_unavailable([]) == [down]
    assert [(w.id, x.node) for w, x in s.schedule(4).admitted] == [(ws[2].id, down)]
