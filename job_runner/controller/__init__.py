"""The job system's controller: the scheduling loop of the aistack service.

Parts, one job each:
- ``election``    which replica leads (PostgreSQL advisory lock / SQLite lease);
- ``workloads``   typed workload kinds: scheduler workload id <-> (kind, row id);
- ``jobs``        the notebook job lifecycle (admission writes, start, poll, finish, retry, cancel,
                  preemption, adoption);
- ``allocations`` server slices for the hub's spawner;
- ``readmodel``   what the API reads (pending positions, a scheduler view rebuilt from the database);
- ``metrics``     the Prometheus metrics the controller updates;
- ``controller``  ``Controller``: the pass that ties them together, its worker thread, its public surface.
"""
from .controller import Controller
from .readmodel import PendingInfo
from .workloads import JOB, SERVER, WorkloadRef

__all__ = ["Controller", "JOB", "PendingInfo", "SERVER", "WorkloadRef"]
