"""Sampling overhead per GPU: CPU time of one monitoring pass divided by the sampling interval, per GPU.

What it measures: ``Monitor.sample_once`` end to end (read the source, attribute to workloads by
process and device, write the samples to SQLite, fold into idle state and intervals, set the Prometheus
gauges, check alarms), with the GPUs' numbers *fed* (``FeedSource``: no GPU here) and with NVML's read
path on a stand-in driver (the real pynvml calls cost what the driver costs, not measured here). Process
CPU time (``time.process_time``), so waiting on the disk is not counted as CPU.

    .venv/bin/python benchmarks/gpu_sampling.py [--gpus 8] [--workloads 16] [--passes 50] [--interval 15]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from job_runner.db import ALLOC_ALLOCATED, Allocation, open_database  # noqa: E402
from job_runner.monitoring.feed import FeedSource  # noqa: E402
from job_runner.monitoring.monitor import Monitor  # noqa: E402
from job_runner.monitoring.samples import GPUSample, ProcessSample, Reading  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, default=8)
    p.add_argument("--workloads", type=int, default=16)
    p.add_argument("--passes", type=int, default=50)
    p.add_argument("--interval", type=float, default=15.0, help="Monitor.interval_s the overhead is spread over")
    a = p.parse_args(argv)
    from aistack_hub.metrics import publish_gpu_samples

    with tempfile.TemporaryDirectory() as d:
        db = open_database(f"sqlite:///{d}/bench.sqlite")
        with db.session() as s:
            for w in range(a.workloads):
                s.add(Allocation(id=w + 1, user=f"u{w}", tenant=f"t{w % 4}", profile="p", state=ALLOC_ALLOCATED,
                                 assignment={"node": "n1", "gpu_indices": [w % a.gpus], "gpu_milli": 500}))
        feed = FeedSource()
        mon = Monitor(db, publish=publish_gpu_samples, source_obj=feed, interval_s=a.interval, disk_paths=[d],
                      prune_every=10)
        pid = os.getpid()
        cpu = []
        for k in range(a.passes):
            feed.feed(Reading(gpus=[GPUSample("n1", str(g), util_pct=float((g * 7 + k) % 100), mem_used_mib=1e4,
                                              mem_total_mib=8e4, model="H100") for g in range(a.gpus)],
                              processes=[ProcessSample("n1", str(g), pid, 10.0, 100.0) for g in range(a.gpus)]))
            t0 = time.process_time()
            mon.sample_once(time.time())
            cpu.append(time.process_time() - t0)
        cpu.sort()
        med, p95 = cpu[len(cpu) // 2], cpu[int(len(cpu) * 0.95) - 1]
        print(f"gpus={a.gpus} workloads={a.workloads} passes={a.passes} interval={a.interval:g}s")
        print(f"CPU per pass: median {med * 1000:.2f} ms, p95 {p95 * 1000:.2f} ms")
        print(f"overhead per GPU: median {100 * med / a.interval / a.gpus:.4f}% of one core "
              f"(p95 {100 * p95 / a.interval / a.gpus:.4f}%); target < 1%")
        db.dispose()
        return 0 if 100 * p95 / a.interval / a.gpus < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
