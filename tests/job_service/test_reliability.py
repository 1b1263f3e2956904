"""Reliability: SIGKILL the service at random moments with hundreds of jobs queued and running, restart it;
concurrent submissions at a tenant's quota edge; two replicas on one PostgreSQL. On SQLite and PostgreSQL."""
from __future__ import annotations

import collections
import json
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from sqlalchemy import create_engine, text

from .helpers import PYTHON, SERVICE_TOKEN, ServiceProcess, make_notebook, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
NB = make_notebook("print(i)", params="i = 0")
FINAL = ("succeeded", "failed", "cancelled")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/aistack.sqlite"
    pg = request.getfixturevalue("postgres")
    return pg.create_db(f"rel_{random.randrange(1 << 30)}")


def quick_service(tmp_path, db_url, deployment_path, name="svc", jobs_dir=None, run_max_s=1.0):
    d = tmp_path / name
    d.mkdir(exist_ok=True)
    # single-user mode: the stand-in runner and its run log live in this test's folders (isolation itself is
    # tests/isolation's; restarts and adoption are the same code in both modes)
    cfg = {"Controller": {"tick_interval_s": 0.1, "lease_ttl_s": 2}, "Isolation": {"mode": "single-user"},
           "LocalExecutor": {"runner_command": [PYTHON, "-S", os.path.join(HERE, "quick_runner.py")],
                             "lost_after_s": 5, "kill_grace_s": 1,
                             # jobs get an allow-listed environment, not the service's: the runs log by name
                             "extra_env": {"AISTACK_TEST_RUNS_LOG": str(tmp_path / "runs.log"),
                                           "AISTACK_TEST_RUN_MAX_S": str(run_max_s)}}}
    if jobs_dir:
        cfg["AIStackService"] = {"jobs_dir": str(jobs_dir)}
    svc = ServiceProcess(str(d), db_url, deployment_path, config=cfg)
    svc.env["AISTACK_TEST_RUNS_LOG"] = str(tmp_path / "runs.log")
    svc.env["AISTACK_TEST_RUN_MAX_S"] = str(run_max_s)
    svc.env["PYTHONPATH"] = os.path.dirname(os.path.dirname(HERE))
    return svc


def runs(tmp_path):
    path = tmp_path / "runs.log"
    if not path.exists():
        return []
    return [tuple(line.split()) for line in path.read_text().splitlines() if line.strip()]


def engine_for(db_url):
    from job_runner.db import normalize_url

    return create_engine(normalize_url(db_url))


def db_jobs(db_url):
    engine = engine_for(db_url)
    try:
        with engine.connect() as c:
            return {r.id: r for r in c.execute(text("SELECT id, state, attempt, failure FROM jobs"))}
    finally:
        engine.dispose()


def check_each_attempt_ran_once(tmp_path, jobs):
    counts = collections.Counter((int(j), int(a)) for j, a, _ in runs(tmp_path))
    twice = {k: n for k, n in counts.items() if n > 1}
    assert not twice, f"attempts that ran more than once: {twice}"
    for job_id, row in jobs.items():
        ran = sorted(a for (j, a) in counts if j == job_id)
        assert len(ran) <= row.attempt, (job_id, ran, row.attempt)
    return counts


def no_runner_left(tmp_path):
    """Processes of this test's service still alive (runners, or anything else it started)."""
    left = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    environ = f.read()
                    if str(tmp_path / "runs.log").encode() in environ:
                        with open(f"/proc/{pid}/stat") as g:
                            if g.read().rsplit(")", 1)[1].split()[0] != "Z":
                                with open(f"/proc/{pid}/cmdline", "rb") as c:  # say what was left
                                    left.append((int(pid), c.read().replace(b"\0", b" ")[:120].decode()))
            except OSError:
                pass
    return left


def test_sigkill_at_random_moments_loses_nothing_and_runs_nothing_twice(tmp_path, db_url, deployment_path):
    rnd = random.Random(1234)
    svc = quick_service(tmp_path, db_url, deployment_path, run_max_s=0.4).start()
    accepted = []
    stop = threading.Event()
    errors = []

    def submitter():
        s = requests.Session()
        s.headers["Authorization"] = f"token {SERVICE_TOKEN}"
        n = 0
        while not stop.is_set() and n < 8:
            body = {"notebook": NB, "profile": "gpu-quarter", "tenant": "team-c", "max_retries": 2,
                    "sweep": {"i": list(range(n * 25, n * 25 + 25))}}
            try:
                r = s.post(svc.api + "jobs", json=body, timeout=30)
            except requests.RequestException:
                time.sleep(0.3)  # the service is down: the submission is unknown (checked in the DB below)
                continue
            if r.status_code == 201:
                accepted.extend(j["id"] for j in r.json()["jobs"])
                n += 1
            elif r.status_code >= 500:
                errors.append((r.status_code, r.text))
            time.sleep(0.2)

    t = threading.Thread(target=submitter)
    t.start()
    try:
        for _ in range(4):
            time.sleep(rnd.uniform(1.0, 3.0))
            svc.kill()
            time.sleep(rnd.uniform(0.0, 1.0))
            svc.start()
        t.join(120)
        assert not t.is_alive()

        def all_final():
            jobs = db_jobs(db_url)
            return jobs if jobs and all(r.state in FINAL for r in jobs.values()) else None
        jobs = wait_for(all_final, 240, 1.0, "every job to end")
    finally:
        stop.set()
        t.join(5)
        svc.stop()
    assert not errors, errors[:3]
    assert len(accepted) == 200 and set(accepted) <= set(jobs)
    states = collections.Counter(r.state for r in jobs.values())
    assert states == {"succeeded": len(jobs)}, (states, [r.failure for r in jobs.values() if r.state != "succeeded"][:5])
    counts = check_each_attempt_ran_once(tmp_path, jobs)
    assert {j for j, _ in counts} == set(jobs)
    # The services' notebook workers leave within a second of their service (they watch their parent) and
    # multiprocessing's resource tracker follows once the last of them is gone: wait for that, boundedly.
    deadline = time.time() + 15
    while no_runner_left(tmp_path) and time.time() < deadline:
        time.sleep(0.2)
    assert no_runner_left(tmp_path) == []


def test_real_papermill_job_survives_a_service_kill(tmp_path, deployment_path):
    """The real runner (papermill + kernel) keeps running while the service is down and is re-adopted."""
    d = tmp_path / "svc"
    d.mkdir()
    cfg = {"Controller": {"tick_interval_s": 0.2, "lease_ttl_s": 1}}
    svc = ServiceProcess(str(d), f"sqlite:///{d}/db.sqlite", deployment_path, config=cfg).start()
    s = svc.session()
    nb = make_notebook("import time, os\nopen('kernel.pid','w').write(str(os.getpid()))",
                       "time.sleep(6)", "print('done after the restart')")
    job = s.post(svc.api + "jobs", json={"notebook": nb, "profile": "cpu", "tenant": "team-a"}).json()
    try:
        wait_for(lambda: (s.get(f"{svc.api}jobs/{job['id']}").json()["progress"] or {}).get("cells_done", 0) >= 1,
                 90, what="the first cell")
        svc.kill()
        time.sleep(2)
        svc.start()
        s = svc.session()
        done = wait_for(lambda: (lambda j: j if j["state"] in FINAL else None)(s.get(f"{svc.api}jobs/{job['id']}").json()),
                        90, 0.5, "the job to end")
        output = s.get(f"{svc.api}jobs/{job['id']}/output").json()
    finally:
        svc.stop()
    assert done["state"] == "succeeded" and done["attempt"] == 1, done
    assert "done after the restart" in json.dumps(output)


def test_concurrent_submissions_at_the_quota_edge(tmp_path, db_url, deployment_path):
    svc = quick_service(tmp_path, db_url, deployment_path, run_max_s=1.5).start()
    s = svc.session()
    try:
        # team-b: 1 GPU, at most 10 queued jobs. Hold its GPU so that every job stays queued.
        alloc = s.post(svc.api + "allocations", json={"user": "dave", "tenant": "team-b", "profile": "gpu-1"}).json()
        assert alloc["state"] == "allocated"

        def post(i):
            sess = svc.session()
            return sess.post(svc.api + "jobs", json={"notebook": NB, "profile": "gpu-1", "tenant": "team-b",
                                                      "parameters": {"i": i}}).status_code
        with ThreadPoolExecutor(16) as pool:
            codes = collections.Counter(pool.map(post, range(40)))
        assert codes == {201: 10, 403: 30}, codes
        s.delete(f"{svc.api}allocations/{alloc['id']}")

        # team-a: 2000 milli-GPU. 24 half-GPU jobs at once: never more than 4 run together.
        with ThreadPoolExecutor(8) as pool:
            codes = collections.Counter(pool.map(lambda i: svc.session().post(svc.api + "jobs", json={
                "notebook": NB, "profile": "gpu-half", "tenant": "team-a", "parameters": {"i": i}}).status_code, range(24)))
        assert codes == {201: 24}, codes
        engine = engine_for(db_url)
        peak = 0
        deadline = time.time() + 120
        try:
            while time.time() < deadline:
                with engine.connect() as c:
                    rows = c.execute(text("SELECT tenant, state, assignment FROM jobs")).all()
                milli = sum(json.loads(a)["gpu_milli"] if isinstance(a, str) else a["gpu_milli"]
                            for t, st, a in rows if t == "team-a" and st in ("admitted", "running") and a)
                peak = max(peak, milli)
                assert milli <= 2000, f"team-a holds {milli} milli-GPU, over its quota of 2000"
                if all(st in FINAL for t, st, a in rows):
                    break
                time.sleep(0.05)
        finally:
            engine.dispose()
        assert peak == 2000  # the quota was used up to its edge
        assert all(r.state == "succeeded" for r in db_jobs(db_url).values())
        check_each_attempt_ran_once(tmp_path, db_jobs(db_url))
    finally:
        svc.stop()


@pytest.mark.postgres
def test_two_replicas_on_one_postgres_run_each_job_once(tmp_path, postgres, deployment_path):
    url = postgres.create_db("replicas")
    jobs_dir = tmp_path / "shared-jobs"
    a = quick_service(tmp_path, url, deployment_path, name="a", jobs_dir=jobs_dir, run_max_s=0.4).start()
    b = quick_service(tmp_path, url, deployment_path, name="b", jobs_dir=jobs_dir, run_max_s=0.4).start()
    try:
        time.sleep(1)
        leaders = [svc for svc in (a, b) if svc.health()["leader"]]
        assert len(leaders) == 1, [svc.health() for svc in (a, b)]
        ids = []
        other = b if leaders[0] is a else a
        for k in range(6):
            svc = (a, b)[k % 2] if k < 3 else other
            r = svc.session().post(svc.api + "jobs", json={"notebook": NB, "profile": "gpu-quarter", "tenant": "team-c",
                                                            "max_retries": 2, "sweep": {"i": list(range(12))}})
            assert r.status_code == 201, r.text
            ids += [j["id"] for j in r.json()["jobs"]]
            if k == 2:
                leaders[0].kill()  # the leader dies; the other replica takes over at its next tick
        wait_for(lambda: other.health()["leader"], 10, what="the other replica to lead")
        jobs = wait_for(lambda: (lambda js: js if all(r.state in FINAL for r in js.values()) else None)(db_jobs(url)),
                        180, 1.0, "every job to end")
        assert set(ids) == set(jobs) and all(r.state == "succeeded" for r in jobs.values())
        check_each_attempt_ran_once(tmp_path, jobs)
    finally:
        a.stop()
        b.stop()
