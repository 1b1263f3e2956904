"""The REST API against a real JupyterHub (tokens, scopes, groups = tenants) and real papermill runs."""
from __future__ import annotations

import json
import os
import time

import pytest
import requests

from .helpers import SERVICE_TOKEN, make_notebook, wait_for

PARAMS_NB = make_notebook(
    "import os\nprint('x =', x, 'lr =', lr)\nprint('CUDA', os.environ['CUDA_VISIBLE_DEVICES'], os.environ.get('CUDA_MPS_ACTIVE_THREAD_PERCENTAGE'), os.environ.get('CUDA_MPS_PINNED_DEVICE_MEM_LIMIT'))",
    "result = x * 2\nresult",
    params="x: int = 1\nlr = 0.5  # learning rate\nname = 'run'",
)


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def submit(s, api, **body):
    body.setdefault("notebook", PARAMS_NB)
    body.setdefault("profile", "gpu-half")
    return s.post(api + "jobs", json=body)


def wait_final(s, api, job_id, timeout=120):
    def final():
        j = s.get(f"{api}jobs/{job_id}").json()
        return j if j["state"] in ("succeeded", "failed", "cancelled") else None
    return wait_for(final, timeout, 0.3, f"job {job_id} to end")


# ------------------------------------------------------------------------------------------------ auth
def test_auth_needs_a_valid_token_with_the_access_scope(hub, hub_service):
    api = hub_service.api
    r = requests.get(api + "jobs")
    assert r.status_code == 401 and r.json()["error"] == "unauthorized"
    r = requests.get(api + "jobs", headers={"Authorization": "token not-a-token"})
    assert r.status_code == 403 and "invalid" in r.json()["message"]
    r = requests.get(api + "jobs", headers={"Authorization": f"token {hub['tokens']['alice-noaccess']}"})
    assert r.status_code == 403 and "access:services!service=aistack" in r.json()["message"]
    r = requests.get(api + "jobs", headers={"Authorization": f"token {hub['tokens']['alice']}"})
    assert r.status_code == 200


def test_through_the_proxy(hub, hub_service):
    r = requests.get(hub["proxy_url"] + "/services/aistack/api/jobs",
                     headers={"Authorization": f"token {hub['tokens']['alice']}"}, timeout=10)
    assert r.status_code == 200, r.text
    spec = requests.get(hub["proxy_url"] + "/services/aistack/api/openapi.json", timeout=10).json()
    assert spec["openapi"].startswith("3.") and "/jobs/{id}/logs" in spec["paths"]


def test_allocations_need_the_hub_token_or_an_admin(hub, hub_service, as_user):
    api = hub_service.api
    body = {"user": "alice", "tenant": "team-a", "profile": "gpu-1"}
    assert as_user("alice").post(api + "allocations", json=body).status_code == 403
    r = as_user("root").post(api + "allocations", json=body)  # a JupyterHub admin
    assert r.status_code == 201, r.text
    a = r.json()
    # the assignment, never an environment: the spawner binds it (job_runner.binding.local.local_env)
    assert a["state"] == "allocated" and a["assignment"]["gpu_indices"][0] in range(4) and "env" not in a
    hubs = hub_service.session(SERVICE_TOKEN)
    assert hubs.get(f"{api}allocations/{a['id']}").json()["state"] == "allocated"
    r = hubs.delete(f"{api}allocations/{a['id']}")
    assert r.status_code == 200 and r.json()["state"] == "released"


def test_allocations_list_pages(hub_service):
    api = hub_service.api
    hubs = hub_service.session(SERVICE_TOKEN)
    made = [hubs.post(api + "allocations", json={"user": "x", "tenant": "team-c", "profile": "gpu-1"}).json()["id"]
            for _ in range(3)]
    try:
        seen, query, pages = [], "allocations?limit=2", 0
        while query:
            r = hubs.get(api + query)
            assert r.status_code == 200, r.text
            page = r.json()
            assert len(page["allocations"]) <= 2 and (page["next"] is None) == ("Link" not in r.headers)
            seen += [a["id"] for a in page["allocations"]]
            query, pages = page["next"] and "allocations?" + page["next"], pages + 1
        assert [i for i in seen if i in made] == made and pages >= 2, (seen, pages)
        for bad in ("limit=0", "limit=x", "after=-1", "limit=100000", "after=259740548197142134784"):
            r = hubs.get(f"{api}allocations?{bad}")
            assert r.status_code == 400 and r.json()["message"], (bad, r.text)
    finally:
        for i in made:
            hubs.delete(f"{api}allocations/{i}")


def test_allocation_over_quota_and_when_full(hub_service):
    api = hub_service.api
    hubs = hub_service.session(SERVICE_TOKEN)
    # team-b may hold 1 GPU: 8 GPUs is over its quota whatever is free -> 403 with a message
    r = hubs.post(api + "allocations", json={"user": "dave", "tenant": "team-b", "profile": "gpu-8"})
    assert r.status_code == 403 and r.json()["error"] == "over_quota", r.text
    first = hubs.post(api + "allocations", json={"user": "dave", "tenant": "team-b", "profile": "gpu-1"})
    assert first.status_code == 201 and first.json()["state"] == "allocated", first.text
    r = hubs.post(api + "allocations", json={"user": "dave", "tenant": "team-b", "profile": "gpu-1", "wait": False})
    assert r.status_code == 403 and r.json()["error"] == "over_quota", r.text  # team-b's one GPU is in use
    # no free GPU at all (team-c may hold 4, but the node has only 4 and 3 are taken by team-c): 409
    held = [hubs.post(api + "allocations", json={"user": "x", "tenant": "team-c", "profile": "gpu-1"}).json()
            for _ in range(3)]
    assert all(h["state"] == "allocated" for h in held), held
    r = hubs.post(api + "allocations", json={"user": "x", "tenant": "team-c", "profile": "gpu-1", "wait": False})
    assert r.status_code == 409 and r.json()["error"] == "no_capacity", r.text
    for h in held:
        hubs.delete(f"{api}allocations/{h['id']}")
    t0 = time.time()
    r = hubs.post(api + "allocations", json={"user": "dave", "tenant": "team-b", "profile": "gpu-1", "wait": 1.5})
    assert r.status_code == 201 and r.json()["state"] == "pending" and time.time() - t0 >= 1.4, r.text
    hubs.delete(f"{api}allocations/{r.json()['id']}")  # the spawner gave up waiting
    r = hubs.post(api + "allocations", json={"user": "dave", "tenant": "team-b", "profile": "gpu-1", "wait": True})
    assert r.status_code == 201 and r.json()["state"] == "pending", r.text
    assert r.json()["reason"] == "quota" and r.json()["position"] == 1
    second = r.json()["id"]
    hubs.delete(f"{api}allocations/{first.json()['id']}")
    wait_for(lambda: hubs.get(f"{api}allocations/{second}").json()["state"] == "allocated", 20, what="the queued server")
    hubs.delete(f"{api}allocations/{second}")


# ------------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize("body,status,error", [
    ("not json", 400, "bad_json"),
    ("[1, 2]", 400, "bad_request"),
    (json.dumps({"notebook": {"cells": "no"}, "profile": "cpu"}), 400, "bad_notebook"),
    (json.dumps({"notebook": {"nbformat": 4}, "profile": "cpu"}), 400, "bad_notebook"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "nope"}), 400, "unknown_profile"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "team-b-only"}), 403, "forbidden"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "parameters": {"x": "ten"}}), 400, "bad_parameters"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "parameters": {"x": True}}), 400, "bad_parameters"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "parameters": {"lr": "fast"}}), 400, "bad_parameters"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "parameters": {"nope": 1}}), 400, "bad_parameters"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "name": "Bad_Name"}), 400, "bad_name"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "name": "a" * 64}), 400, "bad_name"),
    (json.dumps({"path": "../bob/x.ipynb", "profile": "cpu"}), 400, "bad_path"),
    (json.dumps({"path": "/etc/passwd", "profile": "cpu"}), 400, "bad_path"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "gpu-8"}), 403, "over_quota"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "priority": "emergency"}), 403, "forbidden"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "timeout_s": -1}), 400, "bad_request"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "kernel_name": "no-such-kernel"}), 400, "unknown_kernel"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "tenant": "team-b"}), 403, "forbidden"),
    (json.dumps({"notebook": PARAMS_NB, "profile": "cpu", "surprise": 1}), 400, "bad_request"),
])
def test_bad_submissions_are_4xx_and_store_nothing(as_user, hub_service, body, status, error):
    s = as_user("alice")
    before = s.get(hub_service.api + "jobs?limit=500").json()["jobs"]
    r = s.post(hub_service.api + "jobs", data=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"] == error and r.json()["message"]
    assert s.get(hub_service.api + "jobs?limit=500").json()["jobs"] == before


def test_huge_body_is_413(as_user, hub_service):
    r = as_user("alice").post(hub_service.api + "jobs", data=b"x" * (17 * 1024 * 1024),
                              headers={"Content-Type": "application/json"})
    assert r.status_code == 413


# ------------------------------------------------------------------------------------- running jobs
def test_job_runs_with_its_parameters_slice_and_output(as_user, hub_service):
    s, api = as_user("alice"), hub_service.api
    r = submit(s, api, parameters={"x": 21, "lr": 1}, name="double-it")
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["state"] == "queued" and job["parameters"] == {"x": 21, "lr": 1.0} and job["tenant"] == "team-a"
    done = wait_final(s, api, job["id"])
    assert done["state"] == "succeeded", done
    assert done["progress"]["cells_done"] == done["progress"]["cells_total"] >= 3
    assert [e["to"] for e in done["events"]] == ["queued", "admitted", "running", "succeeded"]
    gpu = done["assignment"]["gpu_indices"][0]
    assert "env" not in done  # the database stores the assignment; the executor binds it at start
    out = s.get(f"{api}jobs/{job['id']}/output")
    assert out.status_code == 200
    nb = out.json()
    texts = json.dumps(nb["cells"])
    assert "x = 21 lr = 1.0" in texts and f"CUDA {gpu} 50 0=8000M" in texts and "42" in texts
    logs = s.get(f"{api}jobs/{job['id']}/logs")
    assert "x = 21" in logs.text and "attempt 1" in logs.text
    # others cannot see it; the tenant admin and a hub admin can
    assert as_user("bob").get(f"{api}jobs/{job['id']}").status_code == 404
    assert as_user("dave").get(f"{api}jobs/{job['id']}/output").status_code == 404
    assert as_user("carol").get(f"{api}jobs/{job['id']}").status_code == 200
    assert as_user("root").get(f"{api}jobs/{job['id']}").status_code == 200
    assert job["id"] not in [j["id"] for j in as_user("bob").get(api + "jobs").json()["jobs"]]
    assert job["id"] in [j["id"] for j in as_user("carol").get(api + "jobs").json()["jobs"]]


def test_cell_error_is_classified_with_the_cell(as_user, hub_service):
    s, api = as_user("bob"), hub_service.api
    nb = make_notebook("a = 1", "raise ValueError('bad input data')", "print('never')")
    job = submit(s, api, notebook=nb, profile="cpu", max_retries=2, retry_on=["kernel_died"]).json()
    done = wait_final(s, api, job["id"])
    assert done["state"] == "failed" and done["attempt"] == 1  # a cell error is not retried by this policy
    f = done["failure"]
    assert f["class"] == "cell_error" and f["ename"] == "ValueError" and f["evalue"] == "bad input data"
    i = f["cell_index"]
    assert f["link"].endswith(f"jobs/{job['id']}/output#cell={i}")
    out = s.get(f"{api}jobs/{job['id']}/output").json()
    # the link points at the failed cell of the output notebook (papermill adds an error banner above)
    assert "".join(out["cells"][i]["source"]) == "raise ValueError('bad input data')" and out["cells"][i]["id"] == f["cell_id"]
    assert "bad input data" in json.dumps(out["cells"][i]["outputs"])


def test_kernel_death_is_retried_with_a_stable_checkpoint_dir(as_user, hub_service):
    s, api = as_user("bob"), hub_service.api
    nb = make_notebook(
        "import os, signal\nck = os.environ['AISTACK_CHECKPOINT_DIR']\nmark = os.path.join(ck, 'seen')\n"
        "first = not os.path.exists(mark)\nopen(mark, 'a').write(os.environ['AISTACK_JOB_ATTEMPT'] + '\\n')",
        "if first:\n    os.kill(os.getpid(), signal.SIGKILL)  # the kernel dies, as under the OOM killer",
        "print('resumed from', open(mark).read().split())")
    job = submit(s, api, notebook=nb, profile="cpu", max_retries=1).json()
    done = wait_final(s, api, job["id"], timeout=180)
    assert done["state"] == "succeeded" and done["attempt"] == 2, done
    retry = [e for e in done["events"] if e["to"] == "queued" and e["from"] in ("running", None) and "retrying" in (e["message"] or "")]
    assert retry and "kernel_died" in retry[0]["message"]
    assert "resumed from ['1', '2']" in json.dumps(s.get(f"{api}jobs/{job['id']}/output").json())


def test_timeout_and_cancel_stop_the_process_group(as_user, hub_service):
    s, api = as_user("alice"), hub_service.api
    nb = make_notebook("import time\ntime.sleep(600)")
    timed = submit(s, api, notebook=nb, profile="cpu", timeout_s=10).json()
    cancelled = submit(s, api, notebook=nb, profile="cpu").json()
    wait_for(lambda: s.get(f"{api}jobs/{cancelled['id']}").json()["progress"], 60, what="the job to run a cell")
    r = s.post(f"{api}jobs/{cancelled['id']}/cancel")
    assert r.status_code in (200, 202)
    c = wait_final(s, api, cancelled["id"])
    assert c["state"] == "cancelled" and c["failure"]["class"] == "cancelled"
    t = wait_final(s, api, timed["id"])
    assert t["state"] == "failed" and t["failure"]["class"] == "timeout"
    for j in (c, t):
        # the runner and its kernel (own session) as the runner recorded them: all gone
        with open(os.path.join(hub_service.data_dir, "jobs", str(j["id"]), "attempt-1", "runner.json")) as f:
            runner = json.load(f)
        pids = [runner["pid"]] + [k["pid"] for k in runner["kernels"]]
        if j is c:
            assert len(pids) == 2, runner  # the cancelled one was running a cell: its kernel was recorded
        with open(os.path.join(hub_service.data_dir, "jobs", str(j["id"]), "launch-1.json")) as f:
            launch = json.load(f)
        if launch.get("sandbox"):  # pids of its own PID namespace: gone when nothing is left in there
            wait_for(lambda: not _in_pid_namespace(launch["pid_ns"]), 15, what=f"job {j['id']}'s processes to be gone")
            continue
        for pid in pids:
            wait_for(lambda: not _alive(pid), 15, what=f"process {pid} to be gone")
    assert s.post(f"{api}jobs/{cancelled['id']}/cancel").status_code == 409


def _in_pid_namespace(ns: str) -> list[int]:
    out = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                if os.readlink(f"/proc/{p}/ns/pid") == ns:
                    out.append(int(p))
            except OSError:
                pass
    return out


def test_sweep_makes_one_group_and_rerun_and_queued_cancel(as_user, hub_service):
    s, api = as_user("carol"), hub_service.api
    nb = make_notebook("print(x, name)", params="x = 1\nname = 'a'")
    r = submit(s, api, notebook=nb, profile="cpu", sweep={"x": [1, 2, 3], "name": ["p", "q"]}, name="grid")
    assert r.status_code == 201, r.text
    group = r.json()
    assert len(group["jobs"]) == 6 and len({j["name"] for j in group["jobs"]}) == 6
    assert sorted((j["parameters"]["x"], j["parameters"]["name"]) for j in group["jobs"]) == \
        sorted((x, n) for x in (1, 2, 3) for n in "pq")
    listed = s.get(api + "jobs", params={"group_id": group["group_id"]}).json()["jobs"]
    assert len(listed) == 6
    # cancel the queued ones but the first; rerun the first once it is done
    for j in group["jobs"][1:]:
        s.post(f"{api}jobs/{j['id']}/cancel")
    first = wait_final(s, api, group["jobs"][0]["id"])
    assert first["state"] == "succeeded"
    states = {j["state"] for j in s.get(api + "jobs", params={"group_id": group["group_id"]}).json()["jobs"]}
    assert "cancelled" in states
    again = s.post(f"{api}jobs/{first['id']}/rerun")
    assert again.status_code == 201 and again.json()["id"] != first["id"]
    assert again.json()["parameters"] == first["parameters"]
    assert wait_final(s, api, again.json()["id"])["state"] == "succeeded"


def test_logs_follow_streams_until_the_end(as_user, hub_service):
    s, api = as_user("alice"), hub_service.api
    nb = make_notebook("import time\nfor i in range(3):\n    print('tick', i, flush=True)\n    time.sleep(0.5)")
    job = submit(s, api, notebook=nb, profile="cpu").json()
    t0 = time.time()
    r = s.get(f"{api}jobs/{job['id']}/logs", params={"follow": 1}, stream=True, timeout=120)
    text = "".join(chunk.decode() for chunk in r.iter_content(None))
    assert "tick 2" in text and time.time() - t0 < 120
    assert s.get(f"{api}jobs/{job['id']}").json()["state"] == "succeeded"


def test_path_submission_and_inspect(as_user, hub_service):
    s, api = as_user("alice"), hub_service.api
    home = os.path.join(hub_service.data_dir, "homes", "alice")
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "train.ipynb"), "w") as f:
        json.dump(PARAMS_NB, f)
    r = s.post(api + "jobs/inspect", json={"path": "train.ipynb"})
    assert r.status_code == 200, r.text
    params = {p["name"]: p for p in r.json()["parameters"]}
    assert params["x"]["type"] == "int" and params["lr"]["type"] == "float" and params["lr"]["help"] == "learning rate"
    r = submit(s, api, path="train.ipynb", profile="cpu", parameters={"x": 2})  # both notebook and path
    assert r.status_code == 400 and "exactly one" in r.json()["message"]
    r = s.post(api + "jobs", json={"path": "train.ipynb", "profile": "cpu", "parameters": {"x": 2}})
    assert r.status_code == 201 and r.json()["notebook_path"] == "train.ipynb" and r.json()["name"] == "train"


def test_pagination_filters_and_queue_position(as_user, hub_service):
    s, api = as_user("dave"), hub_service.api
    hubs = hub_service.session(SERVICE_TOKEN)
    # hold team-b's only GPU so that its GPU jobs queue
    alloc = hubs.post(api + "allocations", json={"user": "dave", "tenant": "team-b", "profile": "gpu-1"}).json()
    try:
        ids = [submit(s, api, profile="gpu-1", notebook=make_notebook("1")).json()["id"] for _ in range(5)]
        wait_for(lambda: s.get(f"{api}jobs/{ids[-1]}").json()["queue_position"] is not None, 20, what="positions")
        positions = [s.get(f"{api}jobs/{i}").json()["queue_position"] for i in ids]
        assert positions == sorted(positions) and positions[0] >= 1
        assert s.get(f"{api}jobs/{ids[0]}").json()["pending_reason"] == "quota"
        page1 = s.get(api + "jobs", params={"limit": 2, "state": "queued"}).json()
        assert [j["id"] for j in page1["jobs"]] == ids[::-1][:2] and page1["next"]
        page2 = s.get(api + "jobs?" + page1["next"], params={"limit": 2, "state": "queued"}).json()
        assert [j["id"] for j in page2["jobs"]] == ids[::-1][2:4]
        assert s.get(api + "jobs", params={"state": "bogus"}).status_code == 400
        # team-b may queue 10 jobs: a sweep of 6 more is refused whole
        r = submit(s, api, profile="gpu-1", notebook=make_notebook("x", params="x = 1"), sweep={"x": list(range(6))})
        assert r.status_code == 403 and r.json()["error"] == "queue_full"
        for i in ids:
            s.post(f"{api}jobs/{i}/cancel")
    finally:
        hubs.delete(f"{api}allocations/{alloc['id']}")


def test_profiles_tenants_usage_inventory_metrics(hub, as_user, hub_service):
    api = hub_service.api
    alice, carol, root = as_user("alice"), as_user("carol"), as_user("root")
    prof = alice.get(api + "profiles").json()
    assert prof["tenant"] == "team-a"
    slugs = {p["slug"]: p for p in prof["profiles"]}
    assert "team-b-only" not in slugs and slugs["gpu-1"]["free"] >= 1 and slugs["gpu-8"]["fits_quota"] is False
    assert alice.get(api + "profiles", params={"tenant": "team-b"}).status_code == 403
    hub_profiles = hub_service.session(SERVICE_TOKEN).get(api + "profiles", params={"tenant": "team-b", "user": "dave"})
    assert "team-b-only" in {p["slug"] for p in hub_profiles.json()["profiles"]}
    assert alice.get(api + "tenants").json()["tenants"] == []
    assert [t["name"] for t in carol.get(api + "tenants").json()["tenants"]] == ["team-a"]
    assert carol.get(api + "tenants/team-a").status_code == 200
    assert carol.get(api + "tenants/team-b").status_code == 403
    assert carol.patch(api + "tenants/team-a", json={"weight": 3}).status_code == 403
    r = root.patch(api + "tenants/team-c", json={"weight": 3, "quotas": {"any": {"gpu_milli": 3000}}})
    assert r.status_code == 200 and r.json()["weight"] == 3 and r.json()["quotas"]["any"]["gpu_milli"] == 3000
    assert root.patch(api + "tenants/team-c", json={"weight": -1}).status_code == 400
    assert root.put(api + "tenants/new-team", json={"quotas": {"any": {"gpu_milli": 1000}}}).status_code == 201
    assert root.put(api + "tenants/Bad_Name", json={}).status_code == 400
    usage = root.get(api + "usage").json()
    assert set(usage) == {"tenants", "users", "gpu_hours"}
    assert set(alice.get(api + "usage").json()["users"]) <= {"alice"}
    inv = alice.get(api + "inventory").json()
    assert inv["source"] == "configured" and len(inv["nodes"][0]["gpus"]) == 4
    m = requests.get(hub_service.url + "metrics", headers={"Authorization": f"token {SERVICE_TOKEN}"}).text
    for name in ("aistack_jobs_queued", "aistack_jobs_running", "aistack_gpu_milli_in_use",
                 "aistack_jobs_admitted_total", "aistack_allocation_latency_seconds", "aistack_job_wait_seconds"):
        assert name in m, name
