"""An external merge by line number: a job's results in input order, in flat memory.

Each collected part leaves a *run*: its successful result lines, each
prefixed by the request's ``seq`` (input order across the job's files) as 16
hex digits and a tab, sorted by it. A run is sorted without holding its lines:
only (seq, offset, length) of each line of one part (at most 50,000) is kept,
and the lines are copied from the downloaded file in that order.

``merge_runs`` then merges every run (``heapq.merge``; at most ``FAN_IN`` open
at once, in passes when there are more) into the output, without the prefix,
dropping a seq seen twice. The output is written to a temporary file and
renamed into place: a kill during the merge leaves the previous output (or
none), and the next merge starts over.
"""

from __future__ import annotations

import contextlib
import heapq
import os
import tempfile
from typing import BinaryIO, Callable, Iterable, Iterator

from batchplan.atomic import atomic_write

FAN_IN = 64
_KEY = 16  # hex digits of the seq prefix


def _temp_beside(path: str) -> tuple[int, str]:
    directory = os.path.dirname(os.path.abspath(path))
    return tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")


def write_run(source: str, picks: list[tuple[int, int, int]], path: str) -> int:
    """Write the lines of ``source`` at (seq, offset, length) ``picks``, sorted
    by seq and prefixed by it, to ``path`` (atomically). The lines written."""
    picks.sort()
    with atomic_write(path) as out, open(source, "rb") as src:
        for seq, offset, length in picks:
            src.seek(offset)
            data = src.read(length).rstrip(b"\r\n")
            out.write(b"%016x\t" % seq + data + b"\n")
    return len(picks)


def line_offsets(handle: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """(offset, length, line) of every non-blank line, streamed."""
    offset = 0
    for raw in handle:
        length = len(raw)
        if raw.strip():
            yield offset, length, raw
        offset += length


def _read_run(path: str) -> Iterator[tuple[int, bytes]]:
    with open(path, "rb") as handle:
        for raw in handle:
            if len(raw) > _KEY and raw[_KEY:_KEY + 1] == b"\t":
                yield int(raw[:_KEY], 16), raw


def _merge_into(paths: list[str], out: BinaryIO, strip: bool, on_line: Callable[[], None] | None) -> int:
    written = 0
    last = -1
    for seq, raw in heapq.merge(*(_read_run(p) for p in paths)):
        if seq == last:
            continue  # the same request twice: keep one
        last = seq
        out.write(raw[_KEY + 1:] if strip else raw)
        written += 1
        if on_line is not None:
            on_line()
    return written


def merge_runs(runs: Iterable[str], target: str, *, on_line: Callable[[], None] | None = None) -> int:
    """Merge sorted runs into ``target`` in seq order, without the prefix; the lines written."""
    pending = [p for p in runs if os.path.exists(p)]
    scratch: list[str] = []
    try:
        while len(pending) > FAN_IN:
            merged = []
            for i in range(0, len(pending), FAN_IN):
                fd, tmp = _temp_beside(target)
                scratch.append(tmp)
                with os.fdopen(fd, "wb") as out:
                    _merge_into(pending[i:i + FAN_IN], out, strip=False, on_line=None)
                merged.append(tmp)
            pending = merged
        with atomic_write(target) as out:
            written = _merge_into(pending, out, strip=True, on_line=on_line)
        return written
    finally:
        for path in scratch:
            with contextlib.suppress(OSError):
                os.unlink(path)


def write_lines(lines: Iterable[bytes], target: str) -> int:
    """Write ``lines`` (each ending in a newline) to ``target`` atomically."""
    count = 0
    with atomic_write(target) as out:
        for data in lines:
            out.write(data)
            count += 1
    return count
