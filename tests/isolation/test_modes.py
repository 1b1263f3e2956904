"""The isolation modes: single-user mode when the hub cannot switch users, said at start; 'accounts' without
root is a start-up error; account names that cannot collide with the system's; the job's working folder as
a copy (jupyter-scheduler's input folder). The non-root checks run as a real unprivileged account (in our own
sandbox, since this machine's Python lives under /root, mode 0700)."""
from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time

import pytest
import yaml

from job_runner.binding.accounts import Isolation, IsolationError, safe_name
from job_runner.binding.sandbox import Sandbox, scrub_env
from job_runner.executors.base import JobSpec
from job_runner.executors.local import LocalExecutor
from tests.job_service.helpers import make_notebook

NONROOT_CHECK = r'''
import io, json, os, sys, contextlib
from traitlets.config import Config
from job_runner.binding.accounts import Isolation
from aistack_hub import app
out = {"uid": os.getuid(), "default_mode": Isolation().mode,
       "accounts_problem": Isolation(config=Config({"Isolation": {"mode": "accounts"}})).problem()}
args = app.main.__globals__["argparse"].Namespace(config=sys.argv[1], ip=None, port=None, data_dir=sys.argv[2],
                                                  hub_port=0, service_port=0)
path, facts = app.write_hub_config(args)
out["isolation"] = facts["isolation"]
out["banner"] = app.banner(facts)
err = io.StringIO()
with contextlib.redirect_stderr(err):
    out["up_accounts_rc"] = app.main(["up", "--config", sys.argv[3], "--data-dir", sys.argv[2] + "-2"])
out["up_accounts_err"] = err.getvalue()
print(json.dumps(out))
'''


def _as_unprivileged(tmp, argv):
    """Run argv as an unprivileged account of its own (created like any user's), in our sandbox."""
    iso = Isolation(home_root=os.path.join(tmp, "homes"))
    acct = iso.account("mode-check")
    iso.prepare_home(acct)
    box = Sandbox(acct.uid, acct.gid, acct.name, acct.home, cwd=acct.home, packages=("job_runner", "aistack_hub",
                                                                                      "spawner"))
    env = {"PATH": os.path.dirname(sys.executable) + ":/usr/bin:/bin", "HOME": acct.home, "LANG": "C.UTF-8"}
    proc = subprocess.run(box.command(argv), env=env, capture_output=True, text=True, timeout=120)
    return acct, proc


def test_without_root_the_hub_runs_in_single_user_mode_and_says_so():
    """Closes: when the hub cannot switch users it must say so at start and run in an explicit single-user
    mode; 'accounts' without root is a clear start-up error."""
    if os.geteuid() != 0:
        pytest.fail("needs root (as .ci/run and scripts/run.sh run): it creates the unprivileged account it runs the check as")
    tmp = tempfile.mkdtemp(prefix="aistack-modes-")
    iso = Isolation(home_root=os.path.join(tmp, "homes"))
    home = iso.home("mode-check")
    base = {"ConfigurableHTTPProxy": {"should_start": False}}
    single, accounts = os.path.join(home, "single.yaml"), os.path.join(home, "accounts.yaml")
    os.makedirs(home, exist_ok=True)
    with open(single, "w") as f:
        yaml.safe_dump(base, f)
    with open(accounts, "w") as f:
        yaml.safe_dump({**base, "Isolation": {"mode": "accounts"}}, f)
    try:
        acct, proc = _as_unprivileged(tmp, [sys.executable, "-c", NONROOT_CHECK, single,
                                            os.path.join(home, "data"), accounts])
        data_mode = os.stat(os.path.join(home, "data")).st_mode & 0o777
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["uid"] == acct.uid != 0
    assert out["default_mode"] == "single-user"
    assert "only root" in out["accounts_problem"] and "single-user" in out["accounts_problem"]
    assert out["isolation"].startswith("single-user mode") and acct.name in out["isolation"]
    assert "isolation:  single-user mode" in out["banner"], out["banner"]
    assert out["up_accounts_rc"] == 2 and "cannot start" in out["up_accounts_err"] \
        and "only root" in out["up_accounts_err"], out
    assert data_mode == 0o700  # the data folder the non-root hub made is its own alone too


def test_account_names_never_map_onto_system_accounts(tmp_path):
    """Closes: a hub user named root or daemon must never run as that system account; an existing account
    we did not create is refused."""
    if os.geteuid() != 0:
        pytest.fail("needs root (as .ci/run and scripts/run.sh run): it creates system accounts")
    iso = Isolation(home_root=str(tmp_path / "homes"))
    root = iso.account("root")
    assert root.name == "aistack-root" and root.uid != 0 and root.gid != 0
    assert pwd.getpwnam("root").pw_uid == 0  # untouched
    assert safe_name("a.b") != safe_name("a-b") and len(iso.account_name("x" * 80)) <= 32
    # an account of that name that is not ours: refused
    subprocess.run(["useradd", "--no-create-home", "--comment", "someone else", "aistack-squatter"], check=True)
    try:
        with pytest.raises(IsolationError, match="not created by AIStack"):
            iso.account("squatter")
    finally:
        subprocess.run(["userdel", "aistack-squatter"], check=False)


def test_scrubbed_environment_keeps_only_the_allow_list():
    """Closes: jobs get the service's whole environment (its token, the admin token)."""
    env = {"PATH": "/usr/bin", "AISTACK_ADMIN_TOKEN": "a" * 32, "JUPYTERHUB_API_TOKEN": "svc-token-123456789",
           "AWS_SECRET": "x", "LANG": "C", "X": "has svc-token-123456789 inside"}
    out = scrub_env(env, {"PATH", "LANG", "AISTACK_ADMIN_TOKEN", "X"}, secrets=("svc-token-123456789",))
    assert out == {"PATH": "/usr/bin", "LANG": "C"}


def test_a_job_can_run_in_a_copy_of_its_input_folder(tmp_path):
    """Closes: jobs do not run where the notebook lives (option: a copy of the input folder, as
    jupyter-scheduler offers): the job reads the folder's files, and what it writes stays in its run files."""
    cfg = {"Isolation": {"home_root": str(tmp_path / "homes")}}
    from traitlets.config import Config

    ex = LocalExecutor(jobs_dir=str(tmp_path / "data" / "jobs"), working_folder="copy", config=Config(cfg))
    acct = ex.isolation.account("copy-user")
    ex.isolation.prepare_home(acct)
    folder = os.path.join(acct.home, "exp")
    os.makedirs(folder)
    with open(os.path.join(folder, "input.txt"), "w") as f:
        f.write("41")
    if acct.switch:
        for p in (folder, os.path.join(folder, "input.txt")):
            os.chown(p, acct.uid, acct.gid)
    nb = make_notebook("v = int(open('input.txt').read()) + 1\nopen('made.txt', 'w').write(str(v))\nprint('value', v)")
    spec = JobSpec(id=1, name="copy", user="copy-user", tenant="t", profile="cpu", attempt=1,
                   notebook=json.dumps(nb), notebook_path="exp/nb.ipynb")

    async def run():
        h = await ex.start(spec, {})
        deadline = time.time() + 120
        while time.time() < deadline:
            st = await ex.poll(h)
            if st.final:
                return st
            await asyncio.sleep(0.3)
        raise AssertionError("the job did not end")

    st = asyncio.run(run())
    assert st.state == "succeeded", (st, open(ex.log_path(1)).read()[-2000:])
    assert "value 42" in asyncio.run(ex.read_output(spec))
    assert not os.path.exists(os.path.join(folder, "made.txt"))  # the user's folder is untouched
    assert open(os.path.join(ex.attempt_dir(1, 1), "input-folder", "made.txt")).read() == "42"
