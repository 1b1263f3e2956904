"""Small builders shared by the scheduling tests (no GPU is needed: the core is pure; GPUs are modelled)."""
from job_runner.scheduling import Inventory, Quota, Scheduler, SliceRequest, Tenant, Workload


def inventory(nodes=2, gpus=4, model="A100-80GB", cpu=64000, mem=512000, mig_nodes=0, mig_model="A100-40GB"):
    items = [{"name": "gpu", "cpu_milli": cpu, "memory_mib": mem, "gpus": gpus, "gpu_model": model, "count": nodes}]
    if mig_nodes:
        items.append({"name": "mig", "cpu_milli": cpu, "memory_mib": mem, "gpus": 2, "gpu_model": mig_model,
                      "mig_enabled": True, "count": mig_nodes})
    return Inventory.from_config(items)


def whole(n=1, **kw):
    return SliceRequest("whole", gpus=n, **kw)


def share(milli, **kw):
    return SliceRequest("share", gpu_milli=milli, **kw)


_seq = [0]


def job(tenant, req, user="u", priority="normal", kind="job", at=None, duration=None, wid=None):
    _seq[0] += 1
    return Workload(wid or f"w{_seq[0]}", tenant, user, kind, priority, req,
                    float(_seq[0] if at is None else at), duration)


def tenants(**quotas_milli):
    return [Tenant(name, {"any": Quota(gpu_milli=q)}) for name, q in quotas_milli.items()]


def scheduler(inv=None, ts=None, **kw):
    return Scheduler(inv or inventory(), ts or tenants(a=None, b=None), **kw)
