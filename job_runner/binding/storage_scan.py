"""``python -m job_runner.binding.storage_scan PATH``: ``scan_usage(PATH)`` as one JSON line on stdout and in
the container's termination message (``/dev/termination-log``, or ``--termination-log``).

What a tenant claim's scan pod runs on Kubernetes (``job_runner.executors.k8s_storage_scan``): the service
cannot mount a claim of another namespace, so a short pod in the tenant's namespace mounts it read-only
and measures it with the same code as the embedded deployment's folder scan. Imports nothing of ours but
``storage`` (layer 1)."""
from __future__ import annotations

import argparse
import json
import sys

from job_runner.binding.storage import scan_usage


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("path")
    ap.add_argument("--termination-log", default="/dev/termination-log")
    ap.add_argument("--max-entries", type=int, default=2_000_000)
    a = ap.parse_args(argv)
    got = scan_usage(a.path, max_entries=a.max_entries)
    line = json.dumps(got, sort_keys=True)
    print(line, flush=True)
    try:
        with open(a.termination_log, "w") as f:
            f.write(line[:4000])  # Kubernetes keeps at most 4096 bytes
    except OSError:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
