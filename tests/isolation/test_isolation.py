"""Isolation on one machine, tried as an attacker would: real jobs (papermill kernels through the real
service and LocalExecutor) and a real server (LocalGPUSpawner), started by a hub running as root."""
from __future__ import annotations

import json
import os
import pwd
import stat
import time

from job_runner.binding.accounts import Isolation
from tests.hub.kernel import run_code
from tests.job_service.helpers import make_notebook, wait_for

FINAL = ("succeeded", "failed", "cancelled")


def _pid_of(needle: str) -> int:
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if needle.encode() in f.read():
                        return int(p)
            except OSError:
                continue
    raise AssertionError(f"no process with {needle!r} in its command line")


def _account(hub, user):
    iso = Isolation(home_root=hub.home_root)
    return pwd.getpwnam(iso.account_name(user)), iso.home(user)


def _submit(hub, user, nb, **fields):
    r = hub.service("POST", "jobs", hub.tokens[user], json={"notebook": nb, "profile": "cpu", **fields})
    assert r.status_code == 201, r.text
    return r.json()


def _wait_final(hub, user, job_id, timeout=180):
    def done():
        j = hub.service("GET", f"jobs/{job_id}", hub.tokens[user]).json()
        return j if j["state"] in FINAL else None
    return wait_for(done, timeout, 0.5, f"job {job_id} to end")


def _printed_json(hub, user, job_id) -> dict:
    out = hub.service("GET", f"jobs/{job_id}/output", hub.tokens[user]).json()
    for cell in out["cells"]:
        for o in cell.get("outputs", []):
            text = o.get("text", "")
            text = "".join(text) if isinstance(text, list) else text
            if text.startswith("RESULT "):
                return json.loads(text[len("RESULT "):])
    raise AssertionError(f"no RESULT in the output notebook: {json.dumps(out)[:3000]}")


PROBE = r'''
import glob, json, os, urllib.request, urllib.error
secrets = {secrets!r}
result = {{"uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd(), "home": os.environ.get("HOME"),
           "read": {{}}, "environ": {{}}, "tokens": {{}}, "wrote": {{}}}}
for name, path in {paths!r}.items():
    try:
        with open(path, "rb") as f:
            result["read"][name] = f.read(200).decode("latin-1")
    except OSError as e:
        result["read"][name] = "ERR " + type(e).__name__
for pid in {pids!r} + [int(p) for p in os.listdir("/proc") if p.isdigit()]:
    try:
        with open(f"/proc/{{pid}}/environ", "rb") as f:
            data = f.read().decode("latin-1")
        result["environ"][str(pid)] = [s for s in secrets if s in data]
    except OSError as e:
        result["environ"][str(pid)] = "ERR " + type(e).__name__
result["visible_pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
env = dict(os.environ)
result["env_has_secret"] = [k for k, v in env.items() if any(s in v for s in secrets)]
result["env_names"] = sorted(env)
# whatever looks like a credential: every value in the environment and every file read above
candidates = {{v for v in env.values() if len(v) >= 16}} | {{v.strip() for v in result["read"].values()
                                                          if not v.startswith("ERR ")}}
for tok in sorted(candidates)[:40]:
    for url, method, body in (({hub_api!r} + "users", "GET", None),
                              ({svc_api!r} + "tenants/team-a", "PATCH", b'{{"weight": 99}}')):
        req = urllib.request.Request(url, data=body, method=method,
                                     headers={{"Authorization": "token " + tok, "Content-Type": "application/json"}})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                code = r.status
        except urllib.error.HTTPError as e:
            code = e.code
        except OSError as e:
            code = type(e).__name__
        result["tokens"].setdefault(method + " " + url, []).append(code)
for name, path in {writes!r}.items():
    try:
        with open(path, "w") as f:
            f.write("overwritten by another tenant's job")
        result["wrote"][name] = "WROTE"
    except OSError as e:
        result["wrote"][name] = "ERR " + type(e).__name__
print("RESULT " + json.dumps(result))
'''


def test_a_job_cannot_read_secrets_other_homes_or_process_environments_nor_use_tokens(hub):
    """Closes: a plain member's job runs as the service's account (root) with its whole environment, reads
    the cookie secret, job-token secret, service token and databases from the data folder, reads
    AISTACK_ADMIN_TOKEN from /proc/<hub>/environ, uses the service token, overwrites another job's output."""
    d = hub.data_dir
    # secrets and databases: the platform's alone
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700 and os.stat(d).st_uid == 0
    files = {"cookie_secret": "jupyterhub_cookie_secret", "service_token": "aistack-service-token",
             "job_token_secret": "job-token-secret", "hub_db": "jupyterhub.sqlite", "service_db": "aistack.sqlite"}
    for name, f in files.items():
        st = os.stat(os.path.join(d, f))
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0, (f, oct(st.st_mode), st.st_uid)
    secrets = [open(os.path.join(d, f)).read().strip() for f in ("aistack-service-token", "job-token-secret")]
    secrets.append(hub.admin_token)
    # another tenant's user: a private file in their home, and a finished job whose output we try to overwrite
    other = _submit(hub, "oscar", make_notebook("print('oscar was here')"))
    assert _wait_final(hub, "oscar", other["id"])["state"] == "succeeded"
    oscar, oscar_home = _account(hub, "oscar")  # created for that job
    with open(os.path.join(oscar_home, "private.txt"), "w") as f:
        f.write("oscar's private notes")
    os.chown(os.path.join(oscar_home, "private.txt"), oscar.pw_uid, oscar.pw_gid)
    other_output = os.path.join(d, "jobs", str(other["id"]), "attempt-1", "output.ipynb")
    paths = {name: os.path.join(d, f) for name, f in files.items()}
    paths["other_home"] = os.path.join(oscar_home, "private.txt")
    paths["other_output"] = other_output
    hub_pid = int(open(os.path.join(d, "jupyterhub.pid")).read())
    service_pid = _pid_of(f"--data-dir={d}")
    code = PROBE.format(secrets=secrets, paths=paths, pids=[hub_pid, service_pid],
                        hub_api=hub.url + "hub/api/", svc_api=hub.url + "services/aistack/api/",
                        writes={"other_output": other_output, "data_dir": os.path.join(d, "planted")})
    job = _submit(hub, "ivy", make_notebook(code))
    done = _wait_final(hub, "ivy", job["id"])
    assert done["state"] == "succeeded", done
    res = _printed_json(hub, "ivy", job["id"])

    ivy, ivy_home = _account(hub, "ivy")
    assert res["uid"] == ivy.pw_uid != 0 and res["gid"] == ivy.pw_gid != 0, res
    assert res["home"] == ivy_home
    assert all(v.startswith("ERR ") for v in res["read"].values()), res["read"]
    # its own PID namespace: neither the hub nor the service exists in there, nor does any other process
    assert str(hub_pid) not in res["environ"] or res["environ"][str(hub_pid)] in ([], ) or \
        str(res["environ"][str(hub_pid)]).startswith("ERR"), res["environ"]
    assert not any(v and not str(v).startswith("ERR") for v in res["environ"].values()), res["environ"]
    assert res["visible_pids"][0] == 1 and len(res["visible_pids"]) < 10, res["visible_pids"]
    assert res["env_has_secret"] == [], res["env_has_secret"]
    assert not [n for n in res["env_names"] if "TOKEN" in n or "SECRET" in n], res["env_names"]
    for endpoint, codes in res["tokens"].items():
        assert all(c in (401, 403) for c in codes), (endpoint, codes)
    assert res["tokens"], "the probe tried no credential at all"
    assert all(v.startswith("ERR ") for v in res["wrote"].values()), res["wrote"]
    assert "oscar was here" in open(other_output).read()
    assert not os.path.exists(os.path.join(d, "planted"))
    # the tenant's weight is what the config says: no token the job held could change it
    t = hub.service("GET", "tenants/team-a").json()
    assert t.get("weight", 1.0) == 1.0, t


def test_a_job_cannot_make_the_service_read_a_secret_through_its_run_files(hub):
    """Closes: the service reads a job's run files as root: a job that replaces its output notebook with a
    symbolic link to a secret (or a FIFO) must get neither the secret back nor a stuck service."""
    d = hub.data_dir
    secret = open(os.path.join(d, "job-token-secret")).read().strip()
    code = ("import os\n"
            f"os.symlink({os.path.join(d, 'job-token-secret')!r}, '/aistack/run/link')\n"
            "os.replace('/aistack/run/link', '/aistack/run/output.ipynb')\n"
            "os.mkfifo('/aistack/run/progress.json.fifo')\n"
            "os.replace('/aistack/run/progress.json.fifo', '/aistack/run/progress.json')")
    job = _submit(hub, "ivy", make_notebook(code))
    _wait_final(hub, "ivy", job["id"])
    r = hub.service("GET", f"jobs/{job['id']}/output", hub.tokens["ivy"])
    assert secret not in r.text and r.status_code < 500, r.text[:500]
    assert hub.service("GET", f"jobs/{job['id']}", hub.tokens["ivy"]).status_code == 200


def test_a_job_runs_in_the_notebooks_folder_with_the_users_home(hub):
    """Closes: jobs run in the service's run folder with the service's HOME, so a notebook that reads
    data.csv beside it works interactively and fails as a job."""
    ivy, home = _account(hub, "ivy")
    folder = os.path.join(home, "projects", "sales")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "data.csv"), "w") as f:
        f.write("region,amount\nnorth,3\nsouth,4\n")
    for base, dirs, names in os.walk(os.path.join(home, "projects")):
        for p in [base] + [os.path.join(base, n) for n in names]:
            os.chown(p, ivy.pw_uid, ivy.pw_gid)
    nb = make_notebook("import csv, os, json\n"
                       "rows = list(csv.DictReader(open('data.csv')))\n"
                       "open('result.txt', 'w').write(str(sum(int(r['amount']) for r in rows)))\n"
                       "print('RESULT ' + json.dumps({'cwd': os.getcwd(), 'home': os.environ['HOME'], "
                       "'total': sum(int(r['amount']) for r in rows)}))")
    job = _submit(hub, "ivy", nb, notebook_path="projects/sales/report.ipynb")
    done = _wait_final(hub, "ivy", job["id"])
    assert done["state"] == "succeeded", done
    assert done["notebook_path"] == "projects/sales/report.ipynb"
    res = _printed_json(hub, "ivy", job["id"])
    assert res == {"cwd": folder, "home": home, "total": 7}, res
    assert open(os.path.join(folder, "result.txt")).read() == "7"  # what it writes stays beside the notebook
    assert os.stat(os.path.join(folder, "result.txt")).st_uid == ivy.pw_uid
    # a path that leaves the home is refused at submission
    r = hub.service("POST", "jobs", hub.tokens["ivy"],
                    json={"notebook": nb, "profile": "cpu", "notebook_path": "../oscar/x.ipynb"})
    assert r.status_code == 400 and "home" in r.json()["message"], r.text


def test_a_server_runs_as_the_users_account_with_its_home_outside_the_data_folder(hub):
    """Closes: local servers run as the hub's account or root, with homes inside the data folder."""
    token = hub.tokens["ivy"]
    r = hub.api("POST", "users/ivy/servers/lab", token, json={"tenant": "team-a", "profile": "cpu"})
    assert r.status_code in (201, 202), r.text
    try:
        srv = hub.wait_ready("ivy", "lab", token, timeout=120)
        hub_pid = int(open(os.path.join(hub.data_dir, "jupyterhub.pid")).read())
        code = ("import os, json\n"
                "def can(p):\n"
                "    try:\n"
                "        open(p, 'rb').read(1); return True\n"
                "    except OSError:\n"
                "        return False\n"
                f"print(json.dumps({{'uid': os.getuid(), 'home': os.environ['HOME'], 'cwd': os.getcwd(), "
                f"'data': os.path.exists({hub.data_dir!r}), "
                f"'cookie': can({os.path.join(hub.data_dir, 'jupyterhub_cookie_secret')!r}), "
                f"'hub_environ': can('/proc/{hub_pid}/environ'), "
                f"'names': sorted(os.environ)}}))")
        out = json.loads(run_code(hub.url.rstrip("/") + srv["url"], token, code).strip().splitlines()[-1])
    finally:
        hub.api("DELETE", "users/ivy/servers/lab", token)
    ivy, home = _account(hub, "ivy")
    assert out["uid"] == ivy.pw_uid != 0, out
    assert out["home"] == out["cwd"] == home and not home.startswith(hub.data_dir), out
    assert out["data"] is False and out["cookie"] is False and out["hub_environ"] is False, out
    assert "AISTACK_ADMIN_TOKEN" not in out["names"] and "AISTACK_SERVICE_TOKEN" not in out["names"], out
    st = os.stat(home)
    assert st.st_uid == ivy.pw_uid and st.st_mode & 0o077 == 0, oct(st.st_mode)  # (Jupyter may add the sticky bit)
    # JupyterHub's record of the server is the server itself: after the stop, nothing of it is left
    wait_for(lambda: not hub.api("GET", "users/ivy", token).json()["servers"].get("lab"), 60, what="the stop")
    deadline = time.time() + 30
    while time.time() < deadline and _pids_of_uid(ivy.pw_uid):
        time.sleep(0.2)
    assert _pids_of_uid(ivy.pw_uid) == [], "processes of the user's account outlived the server"


def _pids_of_uid(uid: int) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.stat(f"/proc/{p}").st_uid == uid:
                    out.append(int(p))
            except OSError:
                continue
    return out
