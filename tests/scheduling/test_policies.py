import pytest

from job_runner.scheduling import (POLICIES, ClusterState, Inventory, SliceRequest, TargetWorkload, make_policy)

from .helpers import inventory, share, whole


def mixed_inventory():
    return Inventory.from_config([
        {"name": "t4", "cpu_milli": 32000, "memory_mib": 128000, "gpus": 2, "gpu_model": "T4"},
        {"name": "a100", "cpu_milli": 64000, "memory_mib": 512000, "gpus": 8, "gpu_model": "A100-80GB"},
        {"name": "a100b", "cpu_milli": 64000, "memory_mib": 512000, "gpus": 8, "gpu_model": "A100-80GB"},
        {"name": "mig", "cpu_milli": 64000, "memory_mib": 512000, "gpus": 2, "gpu_model": "H100-80GB",
         "mig_enabled": True},
    ])


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_every_policy_places_legally_and_respects_models(name):
    inv = mixed_inventory()
    state = ClusterState(inv)
    target = TargetWorkload.from_requests([whole(1), share(500), whole(8)])
    policy = make_policy(name, target)
    reqs = [whole(8), share(300, gpu_models=("T4",)), whole(2, gpu_models=("A100-80GB",)),
            SliceRequest("mig", mig_profile="3g.40gb"), SliceRequest("cpu", cpu_milli=1000), share(700)]
    for req in reqs:
        p = policy.place(state, req)
        assert p is not None, (name, req)
        a = state.allocate(req, p)
        node = inv.node(a.node)
        if req.gpu_models:
            assert all(node.gpus[g].model in req.gpu_models for g in a.gpu_indices)
        if req.kind == "whole":
            assert len(set(a.gpu_indices)) == req.gpus  # all on one node
        if req.kind == "mig":
            assert node.gpus[a.mig[0]].mig_enabled
    assert (state.gpu_free[state.gpu_cap > 0] >= 0).all() and (state.cpu_free >= 0).all()
    # a second 8-GPU request cannot fit anywhere (a100b has 2 GPUs taken)
    assert policy.place(state, whole(8)) is None


def test_first_fit_takes_the_first_node_and_gpu():
    state = ClusterState(inventory(nodes=3))
    p = make_policy("first-fit").place(state, share(500))
    assert (p.node, p.gpus) == (0, (0,))


def test_best_fit_prefers_the_tightest_node_and_gpu():
    state = ClusterState(inventory(nodes=3))
    pol = make_policy("best-fit")
    state.allocate(whole(2), pol.place(state, whole(2)))  # lands on node 0 (all tied)
    state.allocate(share(600), make_policy("first-fit").place(state, share(600)))  # node 0 gpu 2
    p = pol.place(state, share(300))
    assert p.node == 0 and p.gpus == (2,)  # the GPU with 400 left, not an empty one


def test_fgd_avoids_creating_fragments():
    """Target: only 0.5-GPU tasks. Putting 0.5 next to an existing 0.5 leaves no fragment; putting it on a
    GPU with 0.7 free would leave a useless 0.2."""
    state = ClusterState(inventory(nodes=1, gpus=2))
    state.allocate(share(300), make_policy("first-fit").place(state, share(300)))  # gpu0: 700 free
    target = TargetWorkload.from_requests([share(500)] * 10)
    p = make_policy("fgd", target).place(state, share(500))
    assert p.gpus == (1,)
    best = make_policy("best-fit").place(state, share(500))
    assert best.gpus == (0,)  # best-fit would fragment


def test_fgd_cache_follows_state_changes():
    state = ClusterState(inventory(nodes=2, gpus=1))
    pol = make_policy("fgd", TargetWorkload.from_requests([whole(1)]))
    held = []
    for _ in range(2):
        held.append(state.allocate(whole(1), pol.place(state, whole(1))))
    assert pol.place(state, whole(1)) is None
    state.free(whole(1), held[1])  # the cached scores must see the freed GPU
    p = pol.place(state, whole(1))
    assert p is not None and state.inventory.nodes[p.node].name == held[1].node


def test_default_beats_or_matches_fgd_on_a_fragmenting_sequence():
    inv = inventory(nodes=4, gpus=4, cpu=256000)
    reqs = [share(m) for m in (810, 470, 320, 650, 230, 470, 810, 160)] * 6 + [whole(4)] * 3
    target = TargetWorkload.from_requests(reqs)
    placed = {}
    for name in ("fgd", "default"):
        state = ClusterState(inv)
        pol = make_policy(name, target)
        n = 0
        for r in reqs:
            p = pol.place(state, r)
            if p is not None:
                state.allocate(r, p)
                n += r.charge().gpu_milli
        placed[name] = n
    assert placed["default"] >= placed["fgd"] * 0.98


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown placement policy"):
        make_policy("random")
