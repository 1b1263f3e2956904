"""The usage scan: allocated bytes like du (sparse files count what they hold), a hard-linked file once,
symbolic links not followed, a bounded walk says it is partial, and the cache reuses a scan within its ttl."""
from __future__ import annotations

import os

from job_runner.binding.storage import UsageCache, scan_usage


def test_scan_counts_like_du(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "data.bin").write_bytes(b"x" * 100_000)
    os.link(tmp_path / "a" / "data.bin", tmp_path / "a" / "again.bin")
    os.symlink("/usr", tmp_path / "a" / "usr")
    with open(tmp_path / "sparse", "wb") as f:
        f.truncate(1 << 30)  # 1 GiB apparent, nothing allocated
    got = scan_usage(str(tmp_path))
    blocks = os.stat(tmp_path / "a" / "data.bin").st_blocks * 512
    assert blocks <= got["bytes"] < blocks + 64 * 1024, got  # the data once (+ folders, the link)
    assert got["files"] == 3 and got["dirs"] == 1 and got["partial"] is False
    assert scan_usage(str(tmp_path), max_entries=2)["partial"] is True


def test_cache_reuses_within_ttl(tmp_path):
    cache = UsageCache(ttl=3600, max_entries=1000)
    first = cache.get(str(tmp_path))
    (tmp_path / "new").write_bytes(b"y" * 50_000)
    assert cache.get(str(tmp_path))["bytes"] == first["bytes"]  # within the ttl: the last scan
    assert cache.get(str(tmp_path), fresh=True)["bytes"] > first["bytes"]
