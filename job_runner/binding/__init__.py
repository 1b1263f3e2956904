"""How a slice the core assigned reaches a workload: environment for a local process (``local``), pod
resources for Kubernetes (``kube``), and the GPUs NVML sees on this node (``discovery``); which account runs a
user's local workloads (``accounts``) and the sandbox they run in (``sandbox``; these two import nothing of ours).

Layer: above the pure core (``job_runner.scheduling``, the only package of ours imported here), below
both the job system (``job_runner.controller``, ``job_runner.executors``) and the spawners.
"""
