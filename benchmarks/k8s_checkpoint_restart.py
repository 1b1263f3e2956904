"""Restart from checkpoint: a notebook job's pod lost mid-run -> the job running again, on the real test node.

    .venv/bin/python benchmarks/k8s_checkpoint_restart.py [--runs 2] [--how delete|evict|both] [--steps 8]
        [--json]        (as root, from the repository root; about 2.5 min per run pair with the images cached)

Starts the test control plane of tests/k8s (real kube-apiserver, controller-manager, scheduler; kwok's GPU
nodes), the real node of tests/k8s/node.py (kubelet + containerd + runc) with the job image built by
scripts/images.sh, and the real aistack service with the KubernetesExecutor whose jobs' checkpoint
folders are on the tenant's claim (tests/k8s_node/restart.py: a PersistentVolume on a host folder). Then,
in this one process, --runs times:

baseline  a fresh job (cold start through the same queue, executor, node and image): submit -> its pod
          Running -> its notebook started;
restart   a notebook that checkpoints each of --steps 1 s steps; after step 3 is saved its pod is deleted
          (as kubectl delete pod) or evicted (the eviction API, as kubectl drain does): loss -> the old pod
          stopped -> the retried attempt's pod Running -> its notebook resumed from the checkpoint; the
          job must then succeed on attempt 2, resumed at the step after the last saved one.

Prints each run, then p50 and max of loss -> Running and loss -> resumed, and the ratio of loss -> resumed
to the baseline's submit -> notebook started (a restart costs about one cold start plus stopping the old
pod). Goal (issue 11, AIStation's promise): loss -> running again < 30 s.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build_images() -> dict[str, str]:
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "images.sh"), "pause", "job"], capture_output=True,
                          text=True, timeout=1800, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"scripts/images.sh failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return dict(line.split("=", 1) for line in proc.stdout.split() if line.startswith("AISTACK_"))


def main(argv=None) -> int:
    from tests.k8s.controlplane import ControlPlane
    from tests.k8s.node import RealNode
    from tests.k8s_node.restart import RestartHarness

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--how", choices=["delete", "evict", "both"], default="delete")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.steps < 6:
        parser.error("--steps must be at least 6 (the pod is lost after step 3)")
    hows = ["delete", "evict"] if args.how == "both" else [args.how]

    t0 = time.monotonic()
    images = build_images()
    work = Path(tempfile.mkdtemp(prefix="aistack-restart-bench-"))
    baseline, restarts = [], []
    with ControlPlane(workdir=work / "cp") as cp:
        node = RealNode(cp, images["AISTACK_PAUSE_IMAGE"], images["AISTACK_PAUSE_ARCHIVE"])
        try:
            node.start()
            node.import_image(images["AISTACK_JOB_ARCHIVE"])
            h = RestartHarness(cp, node, images, work / "restart").start()
            print(f"setup (images, control plane, real node, image import, service): {time.monotonic() - t0:.0f} s",
                  flush=True)
            try:
                for i in range(args.runs):
                    for how in hows:
                        b = h.cold_start()
                        baseline.append(b)
                        job_id = h.submit(args.steps, 1.0, max_retries=1)
                        r = h.lose_pod(job_id, after_step=3, how=how)
                        row = h.wait_end(job_id)
                        log = h.steps_log(job_id)
                        saved = max(n for a, k, n, _ in log if a == 1 and k == "step")
                        ok = (row["state"] == "succeeded" and row["attempt"] == 2
                              and r["resumed_at_step"] == saved + 1 and not r["both_running"])
                        r.update(how=how, job=job_id, ok=ok, state=row["state"], attempt=row["attempt"])
                        r.pop("rows")
                        restarts.append(r)
                        print(f"run {i + 1} {how}: cold start submit->Running {b['submit_to_running_s']} s, "
                              f"->notebook {b['submit_to_notebook_started_s']} s | loss->old pod stopped "
                              f"{r['loss_to_old_pod_stopped_s']} s, ->Running {r['loss_to_running_s']} s, ->resumed "
                              f"at step {r['resumed_at_step']} {r['loss_to_resumed_s']} s; job {row['state']} on "
                              f"attempt {row['attempt']}{'' if ok else '  <-- NOT OK'}", flush=True)
            finally:
                h.stop()
        finally:
            problems = node.stop()
            if problems:
                print("host not restored: " + "; ".join(problems), file=sys.stderr)

    def p50_max(values):
        return statistics.median(values), max(values)

    run50, runmax = p50_max([r["loss_to_running_s"] for r in restarts])
    res50, resmax = p50_max([r["loss_to_resumed_s"] for r in restarts])
    stop50, stopmax = p50_max([r["loss_to_old_pod_stopped_s"] for r in restarts])
    cold50, coldmax = p50_max([b["submit_to_notebook_started_s"] for b in baseline])
    coldrun50, _ = p50_max([b["submit_to_running_s"] for b in baseline])
    summary = {
        "runs": len(restarts), "all_ok": all(r["ok"] for r in restarts),
        "loss_to_old_pod_stopped_s": {"p50": stop50, "max": stopmax},
        "loss_to_running_s": {"p50": run50, "max": runmax},
        "loss_to_resumed_s": {"p50": res50, "max": resmax},
        "baseline_submit_to_running_s": {"p50": coldrun50},
        "baseline_submit_to_notebook_started_s": {"p50": cold50, "max": coldmax},
        "ratio_resumed_to_cold_start_p50": round(res50 / cold50, 2) if cold50 else None,
        "goal_loss_to_running_under_30_s": runmax < 30,
    }
    print(f"\nloss -> old pod stopped  p50 {stop50:.1f} s  max {stopmax:.1f} s")
    print(f"loss -> running again    p50 {run50:.1f} s  max {runmax:.1f} s   (goal < 30 s: "
          f"{'met' if runmax < 30 else 'NOT met'})")
    print(f"loss -> notebook resumed p50 {res50:.1f} s  max {resmax:.1f} s")
    print(f"baseline cold start: submit -> Running p50 {coldrun50:.1f} s, -> notebook started p50 {cold50:.1f} s;"
          f" ratio resumed / cold start {summary['ratio_resumed_to_cold_start_p50']}")
    if args.json:
        print(json.dumps({"summary": summary, "restarts": restarts, "baseline": baseline}, indent=1))
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
