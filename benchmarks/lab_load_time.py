"""Benchmark: JupyterLab load time with and without the aistack_lab extension, same run, same machine.

Starts two plain JupyterLab servers from .venv on loopback ports: one as installed (extension on), one with
the same prebuilt extensions but aistack_lab (labextensions_path without it, server extension off). Loads /lab in a
fresh headless Chromium profile each time (no cache), alternating between the two, until the launcher and
the file list are shown. Prints medians and the ratio with/without.

    .venv/bin/python benchmarks/lab_load_time.py [--rounds 7]
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_lab(root, with_extension: bool):
    port = free_port()
    token = os.urandom(12).hex()
    cfg = tempfile.mkdtemp(prefix="aistack-lab-bench-cfg-")
    args = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--allow-root",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if not with_extension:
        # the same prebuilt extensions minus aistack_lab (not even its bundle is fetched), server side off too
        exts = os.path.join(cfg, "labextensions")
        os.makedirs(exts)
        installed = os.path.join(sys.prefix, "share", "jupyter", "labextensions")
        for name in os.listdir(installed):
            if name != "aistack_lab":
                os.symlink(os.path.join(installed, name), os.path.join(exts, name))
        with open(os.path.join(cfg, "jupyter_server_config.json"), "w") as f:
            json.dump({"ServerApp": {"jpserver_extensions": {"aistack_lab": False}},
                       "LabApp": {"labextensions_path": [exts]}}, f)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=cfg)
    env.pop("AISTACK_SERVICE_URL", None)
    log = open(os.path.join(cfg, "lab.log"), "w")
    proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/lab?token={token}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.3)
    proc.kill()
    sys.exit(f"jupyter lab did not start; see {cfg}/lab.log")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="aistack-lab-bench-root-")
    with open(os.path.join(root, "hello.txt"), "w") as f:
        f.write("hi\n")
    procs = []
    try:
        p_with, url_with = start_lab(root, True)
        procs.append(p_with)
        p_without, url_without = start_lab(root, False)
        procs.append(p_without)
        env = dict(os.environ, MODE="load", URLS=json.dumps([url_with, url_without]), ROUNDS=str(args.rounds))
        out = subprocess.run(["node", os.path.join(REPO, "benchmarks", "lab_bench.js")], env=env, cwd=REPO,
                             capture_output=True, text=True, timeout=1200)
        res = json.loads([x for x in out.stdout.splitlines() if x.startswith("{")][-1])
        if res.get("error"):
            sys.exit(f"browser run failed: {res['error']}")
    finally:
        for p in procs:
            p.terminate()
            p.wait(20)
    (t_with, t_without), (j_with, j_without) = res["times"], res["jobsPanel"]
    assert all(j_with) and not any(j_without), f"extension presence wrong: with={j_with} without={j_without}"
    m_with, m_without = statistics.median(t_with), statistics.median(t_without)
    print(f"rounds: {args.rounds} each, alternating, fresh Chromium profile per load (headless /usr/bin/chromium)")
    print(f"with aistack_lab    : median {m_with:6.0f} ms  all {t_with}")
    print(f"without aistack_lab : median {m_without:6.0f} ms  all {t_without}")
    print(f"ratio with/without (median): {m_with / m_without:.3f}  (+{m_with - m_without:.0f} ms)")


if __name__ == "__main__":
    main()
