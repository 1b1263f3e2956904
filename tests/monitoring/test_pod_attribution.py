"""DCGM series attributed per workload on Kubernetes, by pod: a dcgm-exporter page (its label set, with
the exporter's Kubernetes pod mapping) of one node whose GPU 2 is split into MIG instances used by two jobs
and whose GPU 0 is time-sliced between two users' servers. No GPU or exporter runs here: the page is text
in the exporter's format (the fake is the page; parsing, pod naming and attribution are the real code).
"""
from __future__ import annotations

from job_runner.executors.base import JobSpec
from job_runner.executors.kubernetes import KubernetesExecutor
from job_runner.monitoring.attribution import server_pod_names, workload_of_pod
from job_runner.monitoring.attribution import attribute
from job_runner.monitoring.dcgm import parse

L = 'UUID="GPU-5fd1e2a0-1c1b-4a7b-9a57-7d3c0d6a{u}",device="nvidia{d}",modelName="NVIDIA A100-SXM4-80GB",' \
    'Hostname="gpu-node-1",DCGM_FI_DRIVER_VERSION="550.54.15"'


def _series(metric, gpu, value, pod="", ns="", mig=None, extra=""):
    lb = f'gpu="{gpu}",' + L.format(u=f"{gpu:04d}", d=gpu)
    if mig:
        lb += f',GPU_I_PROFILE="{mig[0]}",GPU_I_ID="{mig[1]}"'
    if pod:
        lb += f',container="notebook",namespace="{ns}",pod="{pod}"'
    return f"{metric}{{{lb}{extra}}} {value}\n"


def _page():
    rows = {  # (gpu, mig, pod, namespace, engine active 0..1, FB used MiB, extra labels)
        "s-alice": (0, None, "jupyter-alice", "aistack-team-a", 0.55, 30000, ""),
        "s-bob": (0, None, "jupyter-bob--big", "aistack-team-a", 0.55, 30000, ""),  # time-sliced: device values
        "j-41": (2, ("1g.10gb", 7), "aistack-job-41-1-x7k2p", "aistack-team-b", 0.92, 9000, ""),
        "j-42": (2, ("1g.10gb", 8), "aistack-job-42-2-q9w4d", "aistack-team-b", 0.01, 300, ""),
        "j-43": (3, None, "renamed-runner-0", "aistack-team-b", 0.40, 50000, ',aistack_io_job_id="43"'),
        "other": (1, None, "someone-elses-app-7f9c", "default", 0.99, 70000, ""),
    }
    text = "# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.\n" \
           "# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge\n"
    text += "".join(_series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", g, a, p, ns, m, x) for g, m, p, ns, a, _, x in rows.values())
    text += "# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).\n# TYPE DCGM_FI_DEV_FB_USED gauge\n"
    text += "".join(_series("DCGM_FI_DEV_FB_USED", g, f, p, ns, m, x) for g, m, p, ns, _, f, x in rows.values())
    return text


WORKLOADS = [
    {"workload": "alloc:1", "tenant": "team-a", "user": "alice", "server_name": "",
     "assignment": {"node": "gpu-node-1", "gpu_indices": [0], "gpu_milli": 500}},
    {"workload": "alloc:2", "tenant": "team-a", "user": "bob", "server_name": "big",
     "assignment": {"node": "gpu-node-1", "gpu_indices": [0], "gpu_milli": 500}},
    {"workload": "job:41", "tenant": "team-b", "user": "carol",
     "assignment": {"node": "gpu-node-1", "gpu_indices": [2], "mig": [2, "1g.10gb", 0]}},
    {"workload": "job:42", "tenant": "team-b", "user": "dave",
     "assignment": {"node": "gpu-node-1", "gpu_indices": [2], "mig": [2, "1g.10gb", 1]}},
    {"workload": "job:43", "tenant": "team-b", "user": "erin",
     "assignment": {"node": "gpu-node-1", "gpu_indices": [3]}},
]


def test_two_jobs_on_one_mig_split_gpu_and_two_servers_on_a_shared_gpu_are_attributed_by_pod():
    reading = parse(_page())
    got = {w.workload: (round(w.util_pct, 1), w.mem_used_mib)
           for w in attribute(reading, WORKLOADS, pid_resolver=lambda pid: None)}
    # MIG: each job its own instance's series (the device fallback would give both the busier one, 92 %)
    assert got["job:41"] == (92.0, 9000) and got["job:42"] == (1.0, 300)
    # a pod label the exporter copied (aistack.io/job-id) wins over the pod's name
    assert got["job:43"] == (40.0, 50000)
    # time-sliced GPU: each server's own pod series; the exporter repeats the device's values there, so a
    # share keeps the device's activity as its upper bound and is not charged the device's memory
    assert got["alloc:1"] == (55.0, None) and got["alloc:2"] == (55.0, None)
    assert "someone-elses-app-7f9c" not in {w.workload for w in attribute(reading, WORKLOADS, lambda p: None)}


def test_pod_names_are_the_ones_the_executor_and_kubespawner_give():
    ex = KubernetesExecutor(service_url="http://svc/", job_token_secret="k")
    job = JobSpec(id=42, name="n", user="dave", tenant="team-b", profile="p", attempt=2, notebook="{}")
    pod = ex.job_name(job.id, job.attempt) + "-q9w4d"  # the Job controller's pod: <job name>-<5 chars>
    reading = parse(_series("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0, 0.5, pod, "ns"))
    assert workload_of_pod(reading.gpus[0], getattr(reading.gpus[0], "pod_labels", None)) == "job:42"
    assert "jupyter-alice" in server_pod_names("alice")
    assert "jupyter-bob--big" in server_pod_names("bob", "big")
    # names KubeSpawner must slug: its own functions (kubespawner.slugs), the 'safe' and 'escape' forms
    names = server_pod_names("Bob.Smith@example.org")
    assert all(n.startswith("jupyter-") and n == n.lower() for n in names) and len(names) == 2
