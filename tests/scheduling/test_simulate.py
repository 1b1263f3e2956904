import json
from pathlib import Path

import pytest

from job_runner import simulate
from job_runner.scheduling import Inventory, SliceRequest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "traces" / "alibaba-gpu-v2023"

NODES = """sn,cpu_milli,memory_mib,gpu,model
n0,32000,131072,4,T4
n1,32000,131072,4,T4
n2,64000,262144,8,V100M32
n3,16000,65536,0,
"""
PODS_HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n"
PODS_ROWS = [
    "p0,4000,8192,1,1000,,LS,Running,0,500,0",
    "p1,2000,4096,1,500,,LS,Running,10,300,10",
    "p2,2000,4096,1,250,T4,LS,Running,20,900,20",
    "p3,8000,16384,4,1000,V100M32,LS,Running,30,400,30",
    "p4,1000,2048,0,0,,BE,Running,40,100,40",
    "p5,2000,4096,2,1000,,LS,Running,50,700,50",
    "p6,2000,4096,1,810,,LS,Running,60,800,60",
    "p7,2000,4096,1,160,,LS,Running,70,200,70",
]


@pytest.fixture
def small_trace(tmp_path):
    nodes = tmp_path / "nodes.csv"
    pods = tmp_path / "pods.csv"
    nodes.write_text(NODES)
    pods.write_text(PODS_HEADER + "\n".join(PODS_ROWS) + "\n")
    return str(nodes), str(pods)


def run_cli(capsys, *args):
    rc = simulate.main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


def test_read_pods_maps_kinds(small_trace):
    tasks = simulate.read_pods(small_trace[1])
    kinds = [(t.request.kind, t.gpu_milli) for t in tasks]
    assert kinds[:5] == [("whole", 1000), ("share", 500), ("share", 250), ("whole", 4000), ("cpu", 0)]
    assert tasks[2].request.gpu_models == ("T4",)


def test_inflate_is_seeded_and_reaches_the_ratio(small_trace):
    """As the paper's simulator: the trace's tasks first (shuffled), then sampled ones until the next
    would pass the ratio."""
    tasks = simulate.read_pods(small_trace[1])
    cap = 16 * 1000
    a = simulate.inflate(tasks, cap, 1.3, 42)
    b = simulate.inflate(tasks, cap, 1.3, 42)
    c = simulate.inflate(tasks, cap, 1.3, 43)
    assert a == b and a != c
    asked = sum(tasks[i].gpu_milli for i in a)
    assert 1.3 * cap - max(t.gpu_milli for t in tasks) < asked <= 1.3 * cap
    assert sorted(a[:len(tasks)]) == list(range(len(tasks)))  # the trace's own tasks come first


def test_inflate_trims_a_trace_above_the_ratio(small_trace):
    tasks = simulate.read_pods(small_trace[1])  # 9.72 GPUs asked
    order = simulate.inflate(tasks, 4000, 1.3, 42)  # 5.2 GPUs of capacity x 1.3
    assert len(set(order)) == len(order) < len(tasks)
    assert 5200 - 4000 < sum(tasks[i].gpu_milli for i in order) <= 5200


def test_allocation_floor_counts_models_node_sizes_and_slivers():
    """2 T4 GPUs on one node, 2 V100 GPUs on another (4,000 milli). Three whole T4-only tasks and one
    unconstrained: only two T4 tasks fit the T4s, the free one takes a V100, so 1,000 is left at best
    (a fractional relaxation can do no better). A 4-GPU task fits no 2-GPU node. Two 0.6 shares can
    never share a GPU: 800 of slivers."""
    inv = Inventory.from_config([
        {"name": "t4", "cpu_milli": 8000, "memory_mib": 8000, "gpus": 2, "gpu_model": "T4"},
        {"name": "v100", "cpu_milli": 8000, "memory_mib": 8000, "gpus": 2, "gpu_model": "V100"},
    ])
    t4 = SliceRequest("whole", gpus=1, gpu_models=("T4",))
    r = simulate.allocation_floor_milli(inv, [t4, t4, t4, SliceRequest("whole", gpus=1)])
    assert r["floor_milli"] == pytest.approx(1000) and r["unplaceable_milli"] == pytest.approx(1000)
    r = simulate.allocation_floor_milli(inv, [SliceRequest("whole", gpus=4)])
    assert r["floor_milli"] == pytest.approx(4000)
    r = simulate.allocation_floor_milli(inv, [SliceRequest("share", gpu_milli=600)] * 2 + [SliceRequest("whole", gpus=2)])
    assert r["share_sliver_milli"] == 800
    # the whole task takes one node; the shares (1,200 + 800 of slivers) fill the other: 2,000 milli
    # of capacity allocates 1,200, so 800 stay unallocated
    assert r["floor_milli"] == pytest.approx(800)
    assert simulate.allocation_floor_milli(inv, [SliceRequest("cpu", cpu_milli=100)])["floor_milli"] == 4000


def test_cli_json_for_every_policy(small_trace, capsys):
    nodes, pods = small_trace
    rc, out, _ = run_cli(capsys, "--nodes", nodes, "--pods", pods, "--policy", "first-fit,best-fit,fgd,default",
                         "--seeds", "3", "--json")
    assert rc == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["policy"] for r in rows] == ["first-fit", "best-fit", "fgd", "default"]
    for r in rows:
        assert {"alloc_pct_at_100", "alloc_pct_at_130", "alloc_pct_at_100_std", "unallocated_gpus_at_100",
                "floor_gpus_at_100", "decisions_per_s"} <= set(r)
        assert 0 <= r["floor_gpus_at_100"] <= r["unallocated_gpus_at_100"] + 0.1
        assert 0 < r["alloc_pct_at_100"] <= r["alloc_pct_at_130"] <= 100
        assert r["unallocated_gpus_at_100"] == pytest.approx(16 * (1 - r["alloc_pct_at_100"] / 100), abs=0.1)
        assert r["seeds"] == [42, 43, 44]
    again = [json.loads(line) for line in run_cli(capsys, "--nodes", nodes, "--pods", pods, "--policy",
                                                   "first-fit,best-fit,fgd,default", "--seeds", "3", "--json")[1].splitlines()]
    assert [r["alloc_pct_at_100"] for r in again] == [r["alloc_pct_at_100"] for r in rows]  # deterministic


def test_cli_table_and_errors(small_trace, capsys, tmp_path):
    nodes, pods = small_trace
    rc, out, _ = run_cli(capsys, "--nodes", nodes, "--pods", pods, "--policy", "fgd,default", "--seeds", "1")
    assert rc == 0 and "alloc%@100" in out and "x fgd" in out
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    rc, _, err = run_cli(capsys, "--nodes", nodes, "--pods", str(bad))
    assert rc == 2 and "not an Alibaba pod list" in err
    with pytest.raises(SystemExit):
        simulate.main(["--nodes", nodes, "--pods", pods, "--policy", "random"])


def test_replay_mode(small_trace, capsys):
    nodes, pods = small_trace
    rc, out, _ = run_cli(capsys, "--nodes", nodes, "--pods", pods, "--mode", "replay", "--tenants", "3",
                         "--quota-factor", "0.25", "--json", "--policy", "default")
    r = json.loads(out)
    assert rc == 0 and r["admitted"] == len(PODS_ROWS) and r["never_started"] == 0
    assert 0 < r["jain_index"] <= 1 and set(r["mean_queueing_delay_s"]) <= {"tenant-00", "tenant-01", "tenant-02"}
    assert r["utilisation_pct"] and all(0 <= v <= 100 for _, v in r["utilisation_pct"])


def test_admission_bench_small(small_trace):
    inv = Inventory.from_alibaba_csv(small_trace[0])
    tasks = simulate.read_pods(small_trace[1])
    r = simulate.run_admission_bench(inv, tasks, "default", n_pending=500, n_tenants=10)
    assert r["admitted"] > 0 and r["admitted"] + r["still_pending"] == 500


def test_jain_index():
    assert simulate.jain([1, 1, 1]) == pytest.approx(1.0)
    assert simulate.jain([1, 0, 0, 0]) == pytest.approx(0.25)


def test_shared_trace_default_policy_beats_fgd(capsys):
    if not SHARED.is_dir():
        pytest.fail(f"the shared Alibaba traces are missing: expected {SHARED} (../shared from the repo root); "
                    "this test needs cluster-trace-gpu-v2023's openb_* CSV files there")
    rc, out, _ = run_cli(capsys, "--nodes", str(SHARED / "openb_node_list_gpu_node.csv"), "--pods",
                         str(SHARED / "openb_pod_list_default.csv"), "--policy", "fgd,default", "--seeds", "1", "--json")
    assert rc == 0
    fgd, default = (json.loads(line) for line in out.splitlines())
    assert fgd["gpus"] == 6212
    assert 90 < fgd["alloc_pct_at_100"] < 100 and 90 < default["alloc_pct_at_100"] < 100
    assert default["unallocated_gpus_at_100"] < fgd["unallocated_gpus_at_100"]
