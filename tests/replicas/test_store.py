"""The two run-file stores behind one interface: the folder (embedded) and the database (replicas), on
SQLite and on the real PostgreSQL; chunk boundaries made small so that every read crosses several."""
import pytest

from job_runner.db import Job, open_database
from job_runner.db.runfiles import DBRunFiles
from job_runner.executors.runfiles import FileRunFiles, read_at


@pytest.fixture(params=["files", "sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request, tmp_path):
    if request.param == "files":
        yield FileRunFiles(str(tmp_path / "jobs")), None
        return
    url = (f"sqlite:///{tmp_path / 'db.sqlite'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres").create_db(f"store_{tmp_path.name[-20:].lower()}"))
    db = open_database(url)
    yield DBRunFiles(db, chunk_bytes=7), db
    db.dispose()


def _job(db):
    if db is None:
        return 1
    with db.session() as s:
        row = Job(name="nb", user="u", tenant="t", profile="p", notebook="{}", parameters={}, request={})
        s.add(row)
        s.flush()
        return row.id


def test_whole_files_logs_and_ranges(store):
    """Closes: run files in one store every replica reads (same answers from the folder and the database)."""
    files, db = store
    job = _job(db)
    assert files.get(job, 1, "progress.json") is None and files.read_log(job) is None
    assert files.open_output(job, 1) is None
    files.put(job, 1, "progress.json", b'{"cells_done": 1}')
    files.put(job, 1, "progress.json", b'{"cells_done": 2}')  # replaced, not appended
    assert files.get(job, 1, "progress.json") == b'{"cells_done": 2}'
    for part in (b"first line\n", b"", b"second, longer line\n"):
        if part:
            files.append_log(job, part)
    log = b"first line\nsecond, longer line\n"
    assert files.read_log(job) == (log, len(log))
    assert files.read_log(job, 5, 9) == (log[5:14], 14)
    text = '{"cells": ["' + "x" * 50 + '"]}'
    files.put(job, 1, "output.ipynb", text.encode())
    assert files.read_output(job, 2) == text  # the newest attempt up to 2 that has one: attempt 1
    f, size = files.open_output(job, 1)
    try:
        assert size == len(text) and read_at(f, 3, 20) == text.encode()[3:23] and read_at(f, size - 2, 10) == b"]}"
    finally:
        f.close()
    files.put(job, 2, "output.ipynb", b"{}")
    assert files.read_output(job, 2) == "{}" and files.read_output(job, 1) == text


def test_a_log_stops_at_its_limit_with_a_line_saying_so(store):
    """Closes: no size limit on what pods send to the log (Limits.max_log_bytes), in both stores alike."""
    files, db = store
    job = _job(db)
    limit = 120
    assert files.append_log(job, b"a" * 30, limit) == 30
    wrote = files.append_log(job, b"b" * 200, limit)  # crosses the limit: cut, and said so
    log, end = files.read_log(job, 0, 10_000)
    assert end == len(log) == 30 + wrote == limit, (end, wrote)
    assert log.startswith(b"a" * 30 + b"b") and log.endswith(b"(Limits.max_log_bytes)]\n"), log
    assert files.append_log(job, b"more", limit) == 0 and files.read_log(job, 0, 10_000)[1] == limit
    assert files.append_log(_job(db) if db is not None else 2, b"c" * 500, 0) == 500  # 0: no limit


def test_rows_go_with_their_job(tmp_path):
    """Closes: run files in the database are removed with their job (retention deletes job rows)."""
    db = open_database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    files = DBRunFiles(db)
    job = _job(db)
    files.put(job, 1, "output.ipynb", b"{}")
    files.append_log(job, b"x")
    with db.session() as s:
        s.query(Job).filter(Job.id == job).delete()
    assert files.read_output(job, 1) is None and files.read_log(job) is None
    db.dispose()
