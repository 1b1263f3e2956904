"""An output notebook served in pieces: whole up to ``Limits.max_output_bytes``, else in byte ranges, read
in chunks in the thread pool (a 100 MiB output was read whole into memory and sent in one write)."""
from __future__ import annotations

import asyncio

from job_runner.executors import runfiles

from .errors import RangeNotSatisfiable, TooLarge
from .limits import mib

CHUNK_BYTES = 1 << 20


class Buffer:
    """An in-memory output (an executor without run files here) with the file interface used below."""

    def __init__(self, data: bytes):
        self.data = data

    def close(self):
        self.data = b""


class OutputPart:
    """What to send of one output notebook: bytes ``start``..``end`` (exclusive) of ``size``."""

    def __init__(self, f, size: int):
        self.f, self.size = f, size
        self.start, self.end = 0, size
        self.partial = False
        self.state = ""

    def select(self, first: int | None, last: int | None, suffix: int | None, max_bytes: int) -> None:
        """Pick the range (HTTP's inclusive ``first-last``, or the last ``suffix`` bytes); none: the whole,
        if it is within ``max_bytes``."""
        if first is None and suffix is None:
            if self.size > max_bytes:
                raise TooLarge(f"output too large ({mib(self.size)} > {mib(max_bytes)} limit, "
                               "Limits.max_output_bytes): fetch it in ranges (a 'Range: bytes=0-' header, or "
                               "?offset=0&length=N)", "output_too_large")
            return
        if suffix is not None:
            first, last = max(0, self.size - suffix), self.size - 1
        if first >= self.size:
            raise RangeNotSatisfiable(f"the output has {self.size} bytes; the range starts at {first}", self.size)
        end = self.size if last is None else min(self.size, last + 1)
        if end - first > max_bytes:
            if last is not None:
                raise TooLarge(f"range too large ({mib(end - first)} > {mib(max_bytes)} limit, "
                               "Limits.max_output_bytes): ask for smaller ranges", "range_too_large")
            end = first + max_bytes  # open-ended: the most one answer may carry; Content-Range says so
        self.start, self.end, self.partial = first, end, True

    async def chunks(self, io):
        """The selected bytes in chunks (``io``: the offload's thread pool call)."""
        at = self.start
        while at < self.end:
            n = min(CHUNK_BYTES, self.end - at)
            if isinstance(self.f, Buffer):
                data = self.f.data[at:at + n]
                await asyncio.sleep(0)
            else:
                data = await io(runfiles.read_at, self.f, at, n)
            if not data:  # the file was truncated under us
                return
            at += len(data)
            yield data

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None
