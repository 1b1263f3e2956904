"""Limits without a service: retention, the notebook migration, the path race, the parameters parser.

Real parts: SQLite databases migrated by alembic, files in a temporary folder, papermill for comparison.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import threading

import pytest
from sqlalchemy import create_engine, text

from aistack_hub.services import notebooks
from aistack_hub.services.errors import Invalid, TooLarge
from job_runner.controller.retention import JobRetention
from job_runner.db import Job, JobEvent, Notebook, RetentionRun, downgrade, open_database, upgrade, utcnow
from job_runner.params import _papermill_parameters, inspect_parameters
from job_service.helpers import make_notebook


def _job(name, state, finished_at, notebook="{}", **kw):
    now = utcnow()
    return Job(name=name, user="u", tenant="t", profile="cpu", state=state, notebook=notebook, parameters={},
               request={}, created_at=finished_at or now, updated_at=now, finished_at=finished_at, **kw)


def test_retention_prunes_old_finished_jobs_and_their_files_and_keeps_the_rest(tmp_path):
    """Closes: finished jobs are never pruned (retention of jobs and their files, older than the setting)."""
    db = open_database(f"sqlite:///{tmp_path}/r.sqlite")
    jobs_dir = tmp_path / "jobs"
    now = utcnow()
    old, recent = now - dt.timedelta(days=10), now - dt.timedelta(days=2)
    with db.session() as s:
        rows = {
            "old-ok": _job("old-ok", "succeeded", old, notebook='{"shared": 1}'),
            "old-failed": _job("old-failed", "failed", old, notebook='{"only-old": 1}'),
            "old-cancelled": _job("old-cancelled", "cancelled", old, notebook='{"shared": 1}'),
            "recent": _job("recent", "succeeded", recent, notebook='{"shared": 1}'),
            "running": _job("running", "running", None, attempt=1),
            "queued": _job("queued", "queued", None),
        }
        s.add_all(rows.values())
        s.flush()
        ids = {k: r.id for k, r in rows.items()}
        s.add_all([JobEvent(job_id=r.id, at=now, to_state=r.state) for r in rows.values()])
    with db.session() as s:  # stored when the old jobs were submitted
        s.query(Notebook).update({Notebook.used_at: old - dt.timedelta(hours=1)})
    for name, jid in ids.items():
        d = jobs_dir / str(jid) / "attempt-1"
        d.mkdir(parents=True)
        (d / "output.ipynb").write_bytes(b"x" * 1000)
        (jobs_dir / str(jid) / "job.log").write_text("log\n")
    orphan = jobs_dir / "99999"  # a job the database lost (a crash between rows and files), old
    orphan.mkdir()
    (orphan / "job.log").write_text("left\n")
    os.utime(orphan, (old.replace(tzinfo=dt.timezone.utc).timestamp(),) * 2)
    ret = JobRetention(db, str(jobs_dir), "test", finished_job_days=7)
    out = ret.run(now)
    assert out["jobs_removed"] == 3 and out["files_removed"] == 3 * 2 + 1
    assert out["bytes_freed"] == 3 * 1004 + 5 and out["notebooks_removed"] == 1  # '{"shared": 1}' is still used
    with db.read() as s:
        left = {r.name for r in s.query(Job)}
        assert left == {"recent", "running", "queued"}
        assert s.query(JobEvent).count() == 3
        assert {n.text for n in s.query(Notebook)} == {'{"shared": 1}', "{}"}
        run = s.query(RetentionRun).one()
        assert (run.jobs_removed, run.files_removed, run.error) == (3, 7, None)
    for name in ("old-ok", "old-failed", "old-cancelled"):
        assert not (jobs_dir / str(ids[name])).exists()
    for name in ("recent", "running", "queued"):
        assert (jobs_dir / str(ids[name]) / "attempt-1" / "output.ipynb").exists()
    assert not orphan.exists()
    assert JobRetention(db, str(jobs_dir), "test", finished_job_days=7).run(now)["jobs_removed"] == 0
    # 0 days: never runs
    assert JobRetention(db, str(jobs_dir), "test", finished_job_days=0).maybe_start() is False


def test_migration_moves_each_distinct_notebook_once(tmp_path):
    """Closes: a 3 MiB request grew the database by 178 MiB (existing rows moved to one copy per content)."""
    url = f"sqlite:///{tmp_path}/m.sqlite"
    engine = create_engine(url)
    upgrade(engine, url, "0002")
    with engine.begin() as c:
        for i, nb in enumerate(['{"a": 1}'] * 5 + ['{"b": 2}']):
            c.execute(text("INSERT INTO jobs (name, user, tenant, profile, priority, state, notebook, parameters, "
                           "max_retries, retry_on, request, attempt, cancel_requested, enqueued, created_at, "
                           "updated_at) VALUES (:n, 'u', 't', 'p', 'normal', 'queued', :nb, '{}', 0, '[]', '{}', 0, "
                           "0, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"), {"n": f"j{i}", "nb": nb})
    upgrade(engine, url, "head")
    db = open_database(url)
    with db.read() as s:
        assert s.query(Notebook).count() == 2
        assert sorted(j.notebook for j in s.query(Job)) == ['{"a": 1}'] * 5 + ['{"b": 2}']
    downgrade(engine, url, "0002")
    with engine.begin() as c:
        assert sorted(r[0] for r in c.execute(text("SELECT notebook FROM jobs"))) == ['{"a": 1}'] * 5 + ['{"b": 2}']


def _write_nb(path, marker: str):
    path.write_text(json.dumps(make_notebook(f"print('{marker}')")))


def test_path_submission_opens_once_and_checks_the_opened_file(tmp_path):
    """Closes: path submissions have a check-then-open race (open once, then check: O_NOFOLLOW, fstat, root)."""
    home, outside = tmp_path / "home", tmp_path / "outside"
    home.mkdir()
    outside.mkdir()
    _write_nb(home / "mine.ipynb", "mine")
    _write_nb(outside / "secret.ipynb", "secret")
    root = os.path.realpath(home)
    assert "mine" in notebooks.prepare_file(root, "mine.ipynb", 10**6).text
    os.symlink(outside / "secret.ipynb", home / "link.ipynb")
    with pytest.raises(Invalid, match="symlink"):
        notebooks.prepare_file(root, "link.ipynb", 10**6)
    os.symlink(outside, home / "dir")
    with pytest.raises(Invalid, match="inside your home"):
        notebooks.prepare_file(root, "dir/secret.ipynb", 10**6)
    os.mkfifo(home / "fifo.ipynb")  # would block a plain open
    with pytest.raises(Invalid, match="not a regular file"):
        notebooks.prepare_file(root, "fifo.ipynb", 10**6)
    with pytest.raises(TooLarge, match="max_notebook_bytes"):
        notebooks.prepare_file(root, "mine.ipynb", 100)
    # The race: a path that flips between the user's own notebook and a symlink to a secret one while
    # the service reads it. Whatever the timing, the secret is never read.
    race = home / "race.ipynb"
    _write_nb(race, "mine")
    stop = threading.Event()

    def flip():
        tmp_file, tmp_link = home / ".race-file", home / ".race-link"
        while not stop.is_set():
            _write_nb(tmp_file, "mine")
            os.replace(tmp_file, race)
            if os.path.lexists(tmp_link):
                os.unlink(tmp_link)
            os.symlink(outside / "secret.ipynb", tmp_link)
            os.replace(tmp_link, race)

    t = threading.Thread(target=flip)
    t.start()
    outcomes = {"mine": 0, "refused": 0}
    try:
        for _ in range(400):
            try:
                nb = notebooks.prepare_file(root, "race.ipynb", 10**6)
            except Invalid:
                outcomes["refused"] += 1
                continue
            assert "secret" not in nb.text
            outcomes["mine"] += 1
    finally:
        stop.set()
        t.join()
    assert outcomes["mine"] + outcomes["refused"] == 400


PARAM_CELLS = [
    "a = 1\nb: str = 'x'  # the b\nc = [1,\n 2,  # two\n 3]  # list help\nd = {'k': 1}\nx = y = 2\n"
    "e: Optional[int] = None\nf = 1.5 # type: float\n",
    "", "# only a comment", "alpha=3 #  help  \nbeta = 'a=b'\n", "flag = True\nname = \"it's\"\n",
]


@pytest.mark.parametrize("source", PARAM_CELLS)
def test_parameters_are_read_as_papermill_reads_them_without_papermill(source):
    """Closes: the first Run as job froze 20+ s (papermill imported for the inspection): same answers."""
    nb = make_notebook("print(1)", params=source)
    light = {n: (p["inferred_type_name"], p["default"], p["help"]) for n, p in inspect_parameters(nb).items()}
    assert light == {n: (a, d, h) for n, a, d, h in _papermill_parameters(nb)}
