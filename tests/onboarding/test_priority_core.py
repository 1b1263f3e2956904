"""Priorities by grant in the pure scheduling core (tests/scheduling style: modelled GPUs, no I/O).

``high`` and ``emergency`` each need a per-tenant grant (the emergency grant includes ``high``), and a
tenant's running ``high`` work can be capped at a share of the pool's GPUs: over it, high work waits (or is
refused outright when it alone exceeds the cap) while the tenant's normal work and other tenants go on.
"""
from __future__ import annotations

import pytest

from job_runner.scheduling import Scheduler, Tenant
from tests.scheduling.helpers import inventory, job, whole


def sched(**tenant_kw):
    return Scheduler(inventory(nodes=1, gpus=4), [Tenant("a", {}, **tenant_kw), Tenant("b", {})])


@pytest.mark.parametrize("priority,grants,ok", [
    ("normal", {}, True),
    ("high", {}, False),
    ("high", {"high_users": {"u"}}, True),
    ("high", {"emergency_users": {"u"}}, True),  # the emergency grant includes high
    ("emergency", {}, False),
    ("emergency", {"high_users": {"u"}}, False),
    ("emergency", {"emergency_users": {"u"}}, True),
    ("high", {"high_users": {"someone-else"}}, False),
])
def test_priorities_above_normal_need_a_grant(priority, grants, ok):
    """Closes: priority "high" needs no grant."""
    s = sched(**grants)
    v = s.check(job("a", whole(1), user="u", priority=priority))
    assert v.ok is ok, v
    if not ok:
        assert v.reason == "forbidden" and priority in v.message and "grant" in v.message
        assert s.submit(job("a", whole(1), user="u", priority=priority)).reason == "forbidden"
        assert not s.pending  # refused work is not queued


def test_a_grant_in_one_tenant_is_not_a_grant_in_another():
    """Closes: priority "high" needs no grant (grants are per tenant)."""
    s = sched(high_users={"u"})
    assert s.check(job("a", whole(1), user="u", priority="high")).ok
    assert s.check(job("b", whole(1), user="u", priority="high")).reason == "forbidden"


def test_high_work_is_capped_at_the_tenants_share_and_others_go_on():
    """Closes: a tenant's share of high work cannot be capped (admission enforces the cap)."""
    s = sched(high_users={"u"}, max_high_share=0.5)  # 2 of the pool's 4 GPUs
    hs = [job("a", whole(1), user="u", priority="high", at=k) for k in range(4)]
    normal_a = job("a", whole(1), user="u", at=10)
    normal_b = job("b", whole(1), user="v", at=11)
    for w in (*hs, normal_a, normal_b):
        assert s.submit(w).ok
    d = s.schedule(100)
    admitted = [w.id for w, _ in d.admitted]
    assert admitted[:2] == [hs[0].id, hs[1].id]  # high first, up to the cap
    assert set(admitted[2:]) == {normal_a.id, normal_b.id}  # the rest of the pool goes to normal work
    waiting = {p.workload.id: p.reason for p in d.pending}
    assert waiting == {hs[2].id: "high_share", hs[3].id: "high_share"}
    assert s.consistent()
    # one high job ends: the next one takes its place under the cap, not more
    s.release(hs[0].id)
    d = s.schedule(200)
    assert [w.id for w, _ in d.admitted] == [hs[2].id]
    assert {p.workload.id: p.reason for p in d.pending} == {hs[3].id: "high_share"}


def test_high_work_larger_than_the_cap_is_refused_with_a_message():
    """Closes: a tenant's share of high work cannot be capped (a request over the cap is refused at once)."""
    s = sched(high_users={"u"}, max_high_share=0.25)
    v = s.check(job("a", whole(2), user="u", priority="high"))
    assert v.reason == "high_share" and "at most 1 GPU" in v.message and "normal priority" in v.message
    assert s.check(job("a", whole(2), user="u")).ok  # the same request at normal priority is fine


def test_emergency_work_is_not_capped_and_normal_work_is_untouched():
    """Closes: a tenant's share of high work cannot be capped (the cap is on high work only)."""
    s = sched(emergency_users={"boss"}, high_users={"u"}, max_high_share=0.0)
    assert s.check(job("a", whole(1), user="u", priority="high")).reason == "high_share"
    e = job("a", whole(2), user="boss", priority="emergency")
    n = job("a", whole(1), user="u")
    assert s.submit(e).ok and s.submit(n).ok
    assert {w.id for w, _ in s.schedule(1).admitted} == {e.id, n.id}


@pytest.mark.parametrize("bad", [-0.1, 1.5, "half", True])
def test_the_cap_is_validated(bad):
    """Closes: a tenant's share of high work cannot be capped (bad settings are refused with the field)."""
    with pytest.raises(ValueError, match="max_high_share"):
        Tenant.from_config({"name": "a", "max_high_share": bad})


def test_grants_and_cap_survive_the_round_trip():
    """Closes: priority "high" needs no grant (the grant is stored with the tenant)."""
    t = Tenant.from_config({"name": "a", "high_users": ["u"], "max_high_share": 0.3})
    again = Tenant.from_config(t.to_dict())
    assert again.high_users == {"u"} and again.max_high_share == 0.3
    with pytest.raises(ValueError, match="high_users"):
        Tenant.from_config({"name": "a", "high_users": "u"})  # a string is not a list of names
