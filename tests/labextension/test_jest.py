"""Runs the lab extension's TypeScript unit tests (jest: form logic, sweep grids, jobs model) from pytest,
so that `scripts/test.sh` covers them."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_jest_unit_tests():
    jlpm = shutil.which("jlpm", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert jlpm, "jlpm (ships with jupyterlab) is missing: run `bash scripts/setup.sh test`"
    assert os.path.isdir(os.path.join(REPO, "node_modules", "jest")), \
        "node_modules lacks jest: run `bash scripts/setup.sh test` (scripts/setup.d/40-labextension.sh runs jlpm install)"
    out = subprocess.run([jlpm, "jest", "--ci"], cwd=REPO, capture_output=True, text=True, timeout=300)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report[-6000:]
    assert "failed" not in report.split("Tests:")[-1].split("\n")[0], report[-3000:]
