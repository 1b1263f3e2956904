import numpy as np
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


def two_model_inventory(first="a-t4", second="b-v100"):
    return Inventory.from_config([
        {"name": first, "cpu_milli": 32000, "memory_mib": 128000, "gpus": 1, "gpu_model": "T4"},
        {"name": second, "cpu_milli": 32000, "memory_mib": 128000, "gpus": 1, "gpu_model": "V100"},
    ])


def test_target_classes_are_the_simulators_typical_pods():
    """Memory is not part of a class, CPU-only tasks are classes, a CPU ask of 0 counts as 100 milli,
    and the most popular classes covering 95% of the tasks are kept, renormalised."""
    reqs = ([whole(1, memory_mib=1000)] * 50 + [whole(1, memory_mib=3000)] * 50  # one class, mean memory 2000
            + [SliceRequest("cpu", cpu_milli=0)] * 40 + [share(250, gpu_models=("T4",))] * 15
            + [whole(8)] * 5)  # 5 of 160 tasks: past the 95% cut
    t = TargetWorkload.from_requests(reqs)
    assert len(t.weight) == 3
    assert t.weight == pytest.approx([100 / 155, 40 / 155, 15 / 155])
    assert list(t.mem) == [2000, 0, 0] and list(t.cpu) == [100, 100, 100]
    assert t.models[2] == ("T4",) and t.share[2] and t.milli[2] == 250
    assert not t.whole[1] and not t.share[1]  # the CPU-only class


def test_fgd_keeps_a_constrained_model_for_the_tasks_that_need_it():
    """Target: half the tasks need a T4, half take any GPU. An unconstrained GPU placed on the V100
    node lowers F by 0.5 x 1000 (the T4-only class can never use that GPU: all of it was fragment);
    on the T4 node F stays 0. Scores int(100 sigmoid(500/1000)) = 62 vs 50: the V100 node, although
    the T4 node comes first."""
    target = TargetWorkload.from_requests([whole(1, gpu_models=("T4",)), whole(1)])
    for name in ("fgd", "default"):
        state = ClusterState(two_model_inventory())
        p = make_policy(name, target).place(state, whole(1))
        assert state.inventory.nodes[p.node].name == "b-v100", name
    state = ClusterState(two_model_inventory())
    assert make_policy("first-fit").place(state, whole(1)).node == 0  # a naive policy takes the T4


def test_default_learns_the_constrained_class_online():
    """Without a given target, ``default`` learns the classes from the requests it observes."""
    pol = make_policy("default")
    state = ClusterState(two_model_inventory())
    for _ in range(3):
        pol.observe(whole(1, gpu_models=("T4",)))
        pol.observe(whole(1))
    p = pol.place(state, whole(1))
    assert state.inventory.nodes[p.node].name == "b-v100"


def test_fgd_equal_scores_go_to_the_first_node_by_name():
    """The simulator's Kubernetes breaks equal scores by the smallest node name, not at random."""
    state = ClusterState(two_model_inventory(first="z-t4", second="b-v100"))
    target = TargetWorkload.from_requests([whole(1)])
    for seed in range(5):
        p = make_policy("fgd", target, seed=seed).place(state, whole(1))
        assert state.inventory.nodes[p.node].name == "b-v100"


def test_fgd_scores_are_quantised_like_kubernetes():
    """Score = int(100 sigmoid(-increase / 1000)): no change scores 50; increases of 5 and 20 milli both
    score 49 (they tie, and the first node by name wins); a decrease of one GPU scores 73."""
    pol = make_policy("fgd", TargetWorkload.from_requests([share(500)]))
    assert list(-pol.cost(np.array([0.0, 5.0, 20.0, -1000.0]))) == [50, 49, 49, 73]


def test_unknown_policy_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown placement policy"):
        make_policy("random")


def test_default_admits_cpu_jobs_on_a_pool_without_gpus():
    # A CPU-only inventory (the Kubernetes pod tests' service has one): the scarcity weights of the
    # default policy divided 0 by 0 and nothing was ever admitted.
    from job_runner.scheduling import Inventory, Scheduler, SliceRequest, Tenant, Workload

    inv = Inventory.from_config([{"name": "node1", "cpu_milli": 8000, "memory_mib": 16384}])
    s = Scheduler(inv, [Tenant.from_config({"name": "team-a"})])
    req = SliceRequest.from_dict({"kind": "cpu", "cpu_milli": 500, "memory_mib": 512})
    s.submit(Workload("a", "team-a", "u", "job", "normal", req, 0.0))
    d = s.schedule(1.0)
    assert [w.id for w, _ in d.admitted] == ["a"]


@pytest.mark.parametrize("name", ["fgd", "default"])
@pytest.mark.parametrize("scale", [1, 5])
def test_incremental_scores_equal_scores_from_scratch(name, scale):
    """The cached, incremental scores (each node's per-GPU table sums kept, plus the change of the
    GPUs a placement takes; after-states shared between identical nodes) equal the fragmentation
    increase computed from the after-state's free GPUs, on every code path: few and many rows, and
    (scale 5: 400 nodes) a shape new to more than 256 nodes scored once per distinct node state."""
    rng = np.random.default_rng(7)
    inv = Inventory.from_config([
        {"name": "a", "cpu_milli": 32000, "memory_mib": 128000, "gpus": 4, "gpu_model": "A100-80GB",
         "count": 50 * scale},
        {"name": "t", "cpu_milli": 16000, "memory_mib": 64000, "gpus": 2, "gpu_model": "T4", "count": 30 * scale},
    ])
    reqs = ([share(int(m), cpu_milli=int(c), memory_mib=4000) for m, c in zip(rng.integers(100, 900, 60),
                                                                               rng.integers(0, 4, 60) * 1000)]
            + [whole(int(k), cpu_milli=2000) for k in rng.integers(1, 4, 20)]
            + [share(500, gpu_models=("T4",))] * 10 + [SliceRequest("cpu", cpu_milli=3000)] * 10)
    pol = make_policy(name, TargetWorkload.from_requests(reqs))
    state = ClusterState(inv)
    checked = 0
    for k in rng.permutation(len(reqs) * 3) % len(reqs):
        r = reqs[k]
        cost, choice = pol.node_costs(state, r)
        node_ok, gpu_ok = state.feasible(r)
        for i in np.flatnonzero(node_ok)[:: 7 * scale]:
            free = state.gpu_free[i].copy()
            if r.kind == "whole":
                free[np.flatnonzero(gpu_ok[i])[: r.gpus]] = 0
            elif r.kind == "share":
                free[choice[i]] -= r.gpu_milli
            args = (np.array([state.node_model[i]]),)
            after = pol.fragmentation(state, np.array([state.cpu_free[i] - r.cpu_milli]),
                                      np.array([state.mem_free[i] - r.memory_mib]), free[None], *args)
            now = pol.fragmentation(state, state.cpu_free[i:i + 1], state.mem_free[i:i + 1],
                                    state.gpu_free[i:i + 1], *args)
            assert cost[i] == pol.cost(after - now)[0], (r, i)
            checked += 1
        assert np.isinf(cost[~node_ok]).all()
        p = pol.place(state, r)
        if p is not None:
            state.allocate(r, p)
    assert checked > 500
