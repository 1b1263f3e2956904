"""Tenant storage on the embedded deployment, for real: a job of a tenant member runs as the member's own
account and writes into the tenant's folder (2770, the tenant's group), reads a dataset that cannot be
written, does not see another tenant's folder; a member of another tenant cannot read the folder even when
it is put in front of them; usage is counted against the quota and an over-quota folder is mounted
read-only. Runs as root (groups and accounts are this machine's)."""
from __future__ import annotations

import errno
import grp
import json
import os
import stat
import subprocess
import sys

from job_runner.binding.accounts import Isolation
from job_runner.binding.sandbox import Sandbox
from tests.job_service.helpers import SERVICE_TOKEN, make_notebook, wait_for

PROBE = r'''
import json, os
d = os.environ["AISTACK_TENANT_DIR"]
open(os.path.join(d, "from-job.bin"), "wb").write(b"x" * 200_000)
try:
    open("/datasets/corpus/new.txt", "w")
    ds_write = "allowed"
except OSError as e:
    ds_write = e.errno
print("PROBE" + json.dumps({"dir": d, "uid": os.getuid(), "ds": open("/datasets/corpus/hello.txt").read(),
      "ds_write": ds_write, "other": os.path.exists("/shared/team-b"), "env": os.environ.get("AISTACK_ENVIRONMENT"),
      "marker": os.environ.get("MARKER")}))
'''


def _wait(s, api, job_id):
    def final():
        j = s.get(f"{api}jobs/{job_id}").json()
        return j if j["state"] in ("succeeded", "failed", "cancelled") else None
    return wait_for(final, 120, 0.3, f"job {job_id} to end")


def _probe(s, api, job_id) -> dict:
    """The JSON the notebook printed after 'PROBE' (from the output notebook)."""
    for cell in s.get(f"{api}jobs/{job_id}/output").json()["cells"]:
        for out in cell.get("outputs", []):
            text = "".join(out.get("text") or [])
            if "PROBE" in text:
                return json.loads(text.split("PROBE", 1)[1].splitlines()[0])
    raise AssertionError("the job printed no PROBE line")


def _sandboxed(acct, binds_ro, argv, home_root):
    Isolation(home_root=home_root).prepare_home(acct)
    box = Sandbox(acct.uid, acct.gid, acct.name, acct.home, cwd=acct.home, ro_to=binds_ro)
    return subprocess.run(box.command(argv), env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, capture_output=True,
                          text=True, timeout=60)


def test_member_job_writes_tenant_folder_dataset_read_only_others_kept_out_usage_counted(hub, storage_service):
    svc, api = storage_service, storage_service.api
    admin, hubs = svc.session(hub["admin_token"]), svc.session(SERVICE_TOKEN)
    alice, carol, dave = (svc.session(hub["tokens"][u]) for u in ("alice", "carol", "dave"))
    # an admin publishes a dataset to both tenants; its files are the platform's
    r = admin.put(api + "datasets/corpus", json={"description": "text", "tenants": ["team-a", "team-b"]})
    assert r.status_code == 201, r.text
    assert alice.put(api + "datasets/x", json={"tenants": ["team-a"]}).status_code == 403
    assert admin.put(api + "datasets/Bad..name", json={}).status_code == 400
    assert admin.put(api + "datasets/y", json={"tenants": ["nope"]}).json()["error"] == "unknown_tenant"
    ds = svc.root / "datasets" / "corpus"
    (ds / "hello.txt").write_text("hello dataset")
    os.chmod(ds / "hello.txt", 0o644)
    assert [d["name"] for d in dave.get(api + "datasets").json()["items"]] == ["corpus"]

    job = alice.post(api + "jobs", json={"notebook": make_notebook(PROBE), "profile": "cpu", "tenant": "team-a"})
    assert job.status_code == 201, job.text
    done = _wait(alice, api, job.json()["id"])
    assert done["state"] == "succeeded", (done, svc.log_tail())
    got = _probe(alice, api, done["id"])
    iso = Isolation(home_root=str(svc.homes))
    a_acct, d_acct = iso.account("alice"), iso.account("dave")
    assert got["uid"] == a_acct.uid  # the member's own account
    assert got["dir"] == "/shared/team-a" and got["ds"] == "hello dataset"
    assert got["ds_write"] == errno.EROFS  # the dataset is read-only
    assert got["other"] is False  # another tenant's folder is not in the sandbox

    folder = svc.root / "tenants" / "team-a"
    group = grp.getgrnam("aistack-tst-team-a")
    st = os.stat(folder)
    assert stat.S_IMODE(st.st_mode) == 0o2770 and st.st_uid == 0 and st.st_gid == group.gr_gid
    made = os.stat(folder / "from-job.bin")
    assert made.st_uid == a_acct.uid and made.st_gid == group.gr_gid  # setgid: the tenant's group owns it
    assert a_acct.name in group.gr_mem and d_acct.name not in group.gr_mem

    # dave (team-b) cannot read team-a's folder even when it is put in front of him; alice's account can
    other = _sandboxed(d_acct, [(str(folder), "/peek")], ["ls", "/peek"], str(svc.homes))
    assert other.returncode != 0 and "Permission denied" in other.stderr, other
    mine = _sandboxed(a_acct, [(str(folder), "/peek")], ["ls", "/peek"], str(svc.homes))
    assert mine.returncode == 0 and "from-job.bin" in mine.stdout, mine

    # usage against quota: members and the tenant admin see it, others not
    u = alice.get(api + "storage/team-a", params={"fresh": "1"}).json()
    assert 200_000 <= u["used_bytes"] < 400_000 and u["files"] == 1 and u["over_quota"] is False, u
    assert "measured" in u["enforcement"]
    assert carol.get(api + "storage/team-a").status_code == 200
    assert dave.get(api + "storage/team-a").status_code == 404
    assert [i["tenant"] for i in dave.get(api + "storage").json()["items"]] == ["team-b"]
    assert alice.put(api + "storage/team-a", json={"quota_gib": 1}).status_code == 403
    assert admin.put(api + "storage/team-a", json={"quota_gib": -1}).status_code == 400
    r = admin.put(api + "storage/team-a", json={"quota_gib": 0.0001})  # 107 KB < 200 KB used
    assert r.status_code == 200 and r.json()["over_quota"] is True and r.json()["warning"] is True, r.text

    # over quota: new workloads get the folder read-only (the hub's GET storage/mounts, as the spawner asks)
    assert alice.get(api + "storage/mounts", params={"tenant": "team-a", "user": "alice"}).status_code == 403
    m = hubs.get(api + "storage/mounts", params={"tenant": "team-a", "user": "alice"}).json()
    assert [str(folder), "/shared/team-a"] in m["ro"] and not m["rw"], m
    ro = Sandbox(a_acct.uid, a_acct.gid, a_acct.name, a_acct.home, cwd=a_acct.home, ro_to=[tuple(x) for x in m["ro"]])
    w = subprocess.run(ro.command([sys.executable, "-c", "open('/shared/team-a/more', 'w')"]),
                       env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert w.returncode != 0 and "Read-only file system" in w.stderr, w
    assert admin.put(api + "storage/team-a", json={"quota_gib": None}).json()["over_quota"] is False
    iso.account("bob")  # the member's account exists (the spawner or executor made it) before its mounts
    m = hubs.get(api + "storage/mounts", params={"tenant": "team-a", "user": "bob"}).json()
    assert [str(folder), "/shared/team-a"] in m["rw"], m
    assert iso.account_name("bob") in grp.getgrnam("aistack-tst-team-a").gr_mem  # a member now
