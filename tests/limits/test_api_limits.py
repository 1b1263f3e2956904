"""Each limit of the API answers a 4xx with a message that names it, and loses nothing (docs/limits.md).

The service runs with small limits (conftest.LIMITS) and the NoopExecutor (a job "runs" for an hour and
writes no files: the tests put an output notebook where the runner would, in the run-file layout).
"""
from __future__ import annotations

import json
import os
import sqlite3
import threading

import requests

from job_service.helpers import make_notebook, wait_for

from .conftest import LIMITS, MAX_BODY


def nb_of(size: int, params: str | None = "a = 1\nb = 'x'") -> dict:
    """A valid notebook of about ``size`` bytes."""
    return make_notebook("print(a)", "# " + "p" * max(0, size - 900), params=params)


def count_jobs(s, api) -> int:
    n, q = 0, "jobs?limit=5"
    while q:
        page = s.get(api + q).json()
        n += len(page["jobs"])
        q = "jobs?" + page["next"] if page["next"] else None
    return n


def submit(s, api, **kw):
    body = {"notebook": nb_of(2000), "profile": "cpu", "tenant": "team-c", **kw}
    return s.post(api + "jobs", json=body)


def test_each_size_limit_is_a_4xx_with_a_message_and_loses_nothing(limited):
    """Closes: limits everywhere (request body, notebook, parameters, sweep sizes: clear 4xx)."""
    s, api = limited.session(), limited.api
    before = count_jobs(s, api)
    cases = [
        # (body, status, error code, words in the message)
        ({"notebook": nb_of(MAX_BODY + 50_000), "profile": "cpu", "tenant": "team-c"}, 413, "too_large",
         "AIStackService.max_body_bytes"),
        ({"notebook": nb_of(LIMITS["max_notebook_bytes"] + 5000), "profile": "cpu", "tenant": "team-c"}, 413,
         "notebook_too_large", "Limits.max_notebook_bytes"),
        ({"notebook": nb_of(2000), "profile": "cpu", "tenant": "team-c", "parameters": {"b": "x" * 3000}}, 413,
         "parameters_too_large", "Limits.max_parameters_bytes"),
        ({"notebook": nb_of(2000), "profile": "cpu", "tenant": "team-c", "sweep": {"b": ["y" * 40] * 60}}, 413,
         "parameters_too_large", "'sweep'"),
        ({"notebook": nb_of(2000), "profile": "cpu", "tenant": "team-c", "sweep": {"a": list(range(4)),
                                                                                   "b": list("abcd")}},
         400, "sweep_too_large", "16 jobs; at most 12"),
    ]
    for body, status, code, words in cases:
        r = s.post(api + "jobs", data=json.dumps(body), headers={"Content-Type": "application/json"})
        assert r.status_code == status, (code, r.status_code, r.text[:300])
        assert r.json()["error"] == code and words in r.json()["message"], r.text[:300]
    assert count_jobs(s, api) == before  # nothing stored by a refusal
    r = submit(s, api, sweep={"a": list(range(3)), "b": list("abcd")})  # 12: exactly the limit
    assert r.status_code == 201 and len(r.json()["jobs"]) == 12, r.text[:300]
    assert count_jobs(s, api) == before + 12


def _db_bytes(path: str) -> int:
    """The database's size as a reader sees it (pages committed to the file and to the WAL)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as c:
        return c.execute("PRAGMA page_count").fetchone()[0] * c.execute("PRAGMA page_size").fetchone()[0]


def test_a_sweep_stores_its_notebook_once(limited):
    """Closes: a 3 MiB request grew the database by 178 MiB (the notebook copied per sweep row)."""
    s, api = limited.session(), limited.api
    db = os.path.join(limited.data_dir, "aistack.sqlite")
    nb = nb_of(150_000)
    size = len(json.dumps(nb))
    start = _db_bytes(db)
    r = s.post(api + "jobs", json={"notebook": nb, "profile": "cpu", "tenant": "team-c",
                                   "sweep": {"a": list(range(12))}})
    assert r.status_code == 201, r.text[:300]
    grown = _db_bytes(db) - start
    # 12 rows: one notebook (~150 kB) and 12 small rows; copied per row it would be 1.8 MB
    assert grown < 2.5 * size, (grown, size)
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        group = r.json()["group_id"]
        shas = c.execute("SELECT DISTINCT notebook_sha FROM jobs WHERE group_id = ?", (group,)).fetchall()
        assert len(shas) == 1
        assert c.execute("SELECT count(*) FROM notebooks WHERE sha256 = ?", shas[0]).fetchone()[0] == 1
    # the same notebook submitted again is still stored once; each job still runs its own copy (rerun)
    r2 = s.post(api + "jobs", json={"notebook": nb, "profile": "cpu", "tenant": "team-c"})
    assert r2.status_code == 201
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as c:
        assert c.execute("SELECT count(*) FROM notebooks WHERE sha256 = ?", shas[0]).fetchone()[0] == 1
    again = s.post(api + f"jobs/{r2.json()['id']}/rerun")
    assert again.status_code == 201, again.text[:300]


def test_get_jobs_pages_with_a_next_link_and_a_max_page_size(limited):
    """Closes: GET jobs returned 90 MiB (every list pages, with a configurable max page size)."""
    s, api = limited.session(), limited.api
    for i in range(7):
        assert submit(s, api, name=f"page-{i}").status_code == 201
    r = s.get(api + "jobs", params={"limit": LIMITS["max_page_size"] + 1})
    assert r.status_code == 400 and r.json()["error"] == "page_too_large"
    assert "Limits.max_page_size" in r.json()["message"]
    first = s.get(api + "jobs", params={"tenant": "team-c"})
    page = first.json()
    assert len(page["jobs"]) == LIMITS["default_page_size"] and page["next"]
    assert first.headers["Link"] == f'<jobs?{page["next"]}>; rel="next"'
    seen = [j["id"] for j in page["jobs"]]
    while page["next"]:
        assert "tenant=team-c" in page["next"]  # the next link keeps the filters
        page = s.get(api + "jobs?" + page["next"]).json()
        assert len(page["jobs"]) <= LIMITS["default_page_size"]
        seen += [j["id"] for j in page["jobs"]]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) >= 7


def _running_job(s, api) -> int:
    jid = submit(s, api).json()["id"]
    wait_for(lambda: s.get(api + f"jobs/{jid}").json()["state"] == "running", 30, what="the job to run")
    return jid


def test_output_is_served_in_ranges_with_a_size_limit(limited):
    """Closes: a 100 MiB output is served whole; a large output is reported as a time-out."""
    s, api = limited.session(), limited.api
    jid = _running_job(s, api)
    adir = os.path.join(limited.data_dir, "jobs", str(jid), "attempt-1")
    os.makedirs(adir, exist_ok=True)
    data = json.dumps(nb_of(LIMITS["max_output_bytes"] * 3)).encode()
    with open(os.path.join(adir, "output.ipynb"), "wb") as f:  # where the runner saves it
        f.write(data)
    whole = s.get(api + f"jobs/{jid}/output")
    assert whole.status_code == 413 and whole.json()["error"] == "output_too_large"
    msg = whole.json()["message"]
    assert f"output too large ({len(data) / 2**20:.1f} MiB > 100000 bytes limit" in msg and "ranges" in msg, msg
    got = b""
    while len(got) < len(data):  # the whole of it, in ranges
        r = s.get(api + f"jobs/{jid}/output", headers={"Range": f"bytes={len(got)}-{len(got) + 60_000 - 1}"})
        assert r.status_code == 206, r.text[:200]
        assert r.headers["Content-Range"] == f"bytes {len(got)}-{len(got) + len(r.content) - 1}/{len(data)}"
        got += r.content
    assert got == data
    r = s.get(api + f"jobs/{jid}/output", params={"offset": 10, "length": 5})
    assert r.status_code == 206 and r.content == data[10:15]
    r = s.get(api + f"jobs/{jid}/output", headers={"Range": "bytes=-7"})
    assert r.status_code == 206 and r.content == data[-7:]
    r = s.get(api + f"jobs/{jid}/output", headers={"Range": "bytes=0-"})  # open-ended: at most the limit
    assert r.status_code == 206 and r.content == data[:LIMITS["max_output_bytes"]]
    r = s.get(api + f"jobs/{jid}/output", headers={"Range": f"bytes={len(data)}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{len(data)}"
    r = s.get(api + f"jobs/{jid}/output", headers={"Range": "bytes=0-200000"})
    assert r.status_code == 413 and r.json()["error"] == "range_too_large"
    r = s.get(api + f"jobs/{jid}/output", headers={"Range": "lines=1-2"})
    assert r.status_code == 400 and r.json()["error"] == "bad_range"
    small = json.dumps(nb_of(5000)).encode()
    with open(os.path.join(adir, "output.ipynb"), "wb") as f:
        f.write(small)
    r = s.get(api + f"jobs/{jid}/output")
    assert r.status_code == 200 and r.content == small and r.headers["Accept-Ranges"] == "bytes"


def test_log_followers_per_user_are_limited(limited):
    """Closes: 150 ?follow=1 log streams pushed GET jobs to 5 s (followers per user limited, 429)."""
    s, api = limited.session(), limited.api
    jid = _running_job(s, api)
    streams = []
    try:
        for _ in range(LIMITS["max_log_followers_per_user"]):
            r = requests.get(api + f"jobs/{jid}/logs", params={"follow": 1}, headers=s.headers, stream=True,
                             timeout=30)
            assert r.status_code == 200
            streams.append(r)
        # the follows are held open: one more is refused with a message ...
        wait_for(lambda: s.get(api + f"jobs/{jid}/logs", params={"follow": 1}, timeout=10).status_code == 429,
                 10, what="the next follow refused")
        r = s.get(api + f"jobs/{jid}/logs", params={"follow": 1}, timeout=10)
        assert r.json()["error"] == "too_many_followers" and "max_log_followers_per_user" in r.json()["message"]
        # ... reading without follow still works, and so does the rest of the API, quickly
        assert s.get(api + f"jobs/{jid}/logs", timeout=10).status_code == 200
        assert s.get(api + "jobs", timeout=5).status_code == 200
    finally:
        for r in streams:
            r.close()
    # a closed stream gives its place back (the service notices at its next idle poll)
    def reopened():
        r = requests.get(api + f"jobs/{jid}/logs", params={"follow": 1}, headers=s.headers, stream=True, timeout=30)
        ok = r.status_code == 200
        r.close()
        return ok
    wait_for(reopened, 20, what="a follow accepted again")


def test_nested_json_and_a_non_string_name_are_400(limited):
    """Closes: nested JSON or a non-string notebook name gives 500 (a clear 400)."""
    s, api = limited.session(), limited.api
    deep = b'{"notebook": ' + b"[" * 100_000 + b"]" * 100_000 + b', "profile": "cpu"}'
    for path in ("jobs", "jobs/inspect", "tenants/team-c"):
        r = s.post(api + path, data=deep, headers={"Content-Type": "application/json"})
        if path.startswith("tenants"):
            r = s.patch(api + path, data=deep, headers={"Content-Type": "application/json"})
        assert r.status_code == 400 and r.json()["error"] == "bad_json" and "nested" in r.json()["message"], r.text
    nb = nb_of(2000)
    for bad in (5, ["x"], {"a": 1}, None, True):
        nb["metadata"]["name"] = bad
        r = s.post(api + "jobs", json={"notebook": nb, "profile": "cpu", "tenant": "team-c"})
        assert r.status_code == 201, (bad, r.text[:300])
        assert r.json()["name"] == "job"
    nb["metadata"]["kernelspec"]["name"] = 7
    r = s.post(api + "jobs/inspect", json={"notebook": nb})
    assert r.status_code == 400 and r.json()["error"] == "bad_notebook", r.text[:300]
    for depth in (300, 5000):  # parameters nested deep: stored or refused, never a 500
        params = '{"x": ' * depth + "1" + "}" * depth
        body = json.dumps({"notebook": make_notebook("1", params="x = {}"), "profile": "cpu", "tenant": "team-c",
                           "parameters": "@"})
        r = s.post(api + "jobs", data=body.replace('"@"', '{"x": ' + params + "}"),
                   headers={"Content-Type": "application/json"})
        assert r.status_code in ((201, 413) if depth == 300 else (400,)), (depth, r.text[:300])


def test_retention_report_is_in_the_api(limited):
    """Closes: finished jobs are never pruned (the cleanup's counts are exposed for the admin page)."""
    s, api = limited.session(), limited.api
    rep = wait_for(lambda: (lambda r: r if r["last_run"] else None)(s.get(api + "retention").json()), 20,
                   what="the first cleanup at start")
    assert rep["finished_job_days"] == 30 and rep["last_run"]["error"] is None
    assert set(rep["totals"]) >= {"jobs_removed", "notebooks_removed", "files_removed", "bytes_freed", "runs"}
