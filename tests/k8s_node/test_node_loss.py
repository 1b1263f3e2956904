"""Restart from checkpoint when a job's *node* dies (issue 11): two real nodes on this machine
(tests/k8s_node/test_second_node.py), the job's pod on the second; the node is killed mid-run (kubelet,
containerd and the containers at once, nothing told to the API server). The node lifecycle controller marks it
Unknown after its grace period; then an operator taints it ``node.kubernetes.io/out-of-service`` (Kubernetes'
non-graceful node shutdown: Kubernetes cannot tell a dead node from a partitioned one, someone must say it),
the taint eviction and pod GC remove its pod, the attempt ends as a run the platform lost, and the retry goes
to the *other* node — the scheduling core no longer gives work to a node its cluster says is down
(``Controller.node_health_interval_s``, ``KubernetesExecutor.watch_nodes``) — where it resumes from the
checkpoint folder on storage both nodes mount. Prints loss -> node Unknown -> out-of-service -> running again.
"""
from __future__ import annotations

import pytest

from tests.k8s.node import RealNode
from tests.k8s_node.restart import RestartHarness

SECOND = "aistack-node-1"
STEPS, STEP_S, LOSE_AFTER = 40, 1.0, 3


@pytest.fixture
def second_node(k8s_control_plane, real_node, images):
    node = RealNode(k8s_control_plane, images["AISTACK_PAUSE_IMAGE"], images["AISTACK_PAUSE_ARCHIVE"], name=SECOND,
                    pod_subnet="10.88.1.0/24", bridge="aistack1", cgroup_root=SECOND,
                    labels={"aistack.test/pool": "second"})
    try:
        node.start()
        node.import_image(images["AISTACK_JOB_ARCHIVE"])
        yield node
    finally:
        problems = node.stop()
        assert problems == [], problems


@pytest.mark.k8s
def test_a_job_whose_node_dies_resumes_from_its_checkpoint_on_the_other_node(k8s_control_plane, real_node,
                                                                            second_node, images, tmp_path):
    # The core's two nodes: the second, smaller, first, so best-fit puts the job there (the one we kill).
    inventory = [{"name": SECOND, "cpu_milli": 1000, "memory_mib": 2048},
                 {"name": real_node.name, "cpu_milli": 2000, "memory_mib": 4096}]
    h = RestartHarness(k8s_control_plane, real_node, images, tmp_path, inventory=inventory,
                       controller={"policy": "best-fit", "node_health_interval_s": 1.0})
    h.start()
    try:
        job_id = h.submit(STEPS, STEP_S, max_retries=0)
        t = h.lose_node(job_id, after_step=LOSE_AFTER, node=second_node)
        row = h.wait_end(job_id)
        log = h.steps_log(job_id)
    finally:
        h.stop()
    print(f"\nrestart from checkpoint (node killed): loss -> node Unknown {t['loss_to_node_unknown_s']} s, "
          f"-> tainted out-of-service {t['loss_to_out_of_service_s']} s, -> old pod gone "
          f"{t['loss_to_old_pod_stopped_s']} s, -> new pod Running on {t['new_node']} {t['loss_to_running_s']} s "
          f"(out-of-service -> Running {t['out_of_service_to_running_s']} s), -> notebook resumed at step "
          f"{t['resumed_at_step']} {t['loss_to_resumed_s']} s")
    assert row["state"] == "succeeded" and row["attempt"] == 2, (row, t["rows"])
    assert ("running", "queued", 1, "attempt 1 failed (infrastructure): retrying") in row["events"], row["events"]
    assert {r for _, _, r in t["rows"] if r} <= {"NodeLost", "PodDeleted", "Evicted"}, t["rows"]
    assert t["new_node"] == real_node.name  # not the dead node the core had assigned first
    saved = max(n for a, k, n, _ in log if a == 1 and k == "step")
    assert saved >= LOSE_AFTER and t["resumed_at_step"] == saved + 1, log
    assert [n for a, k, n, _ in log if a == 2 and k == "step"] == list(range(saved + 1, STEPS)), log
    last_of_1 = max(at for a, _, _, at in log if a == 1)
    first_of_2 = min(at for a, _, _, at in log if a == 2)
    assert last_of_1 < first_of_2 and not t["both_running"], (log, t)
    # once the node is declared dead, the platform's part (pod GC's period of 20 s included) is bounded
    assert t["out_of_service_to_running_s"] < 60, t
