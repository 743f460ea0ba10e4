"""Stage 1: read lines. Stream a batch file in blocks of whole lines; never load it whole."""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass
from typing import BinaryIO, Iterator

from batchplan.atomic import atomic_write
from batchplan.errors import InputError

BOM = b"\xef\xbb\xbf"
BLOCK_BYTES = 4 * 1024 * 1024
# Messages about lines printed before "... and N more": enough to see the
# pattern, few enough to read. The same in every command.
SHOW_LINES = 20
# The magic numbers of compressed files: a batch file is plain JSON lines, so
# such a file was given by mistake and no line of it means anything.
COMPRESSED = (
    (b"\x1f\x8b", "gzip", "gunzip"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"BZh", "bzip2", "bunzip2"),
    (b"PK\x03\x04", "zip", "unzip"),
)


def at_line(path: str | None, line: int, reason: str) -> str:
    """A message about one line in the compiler convention that editors and
    CI log parsers read: ``PATH:LINE: reason``, the path as the user wrote it.
    Every command words its messages about lines through this."""
    return f"{line_ref(path, line)}: {reason}"


def line_ref(path: str | None, line: int) -> str:
    """``PATH:LINE``; ``<input>`` stands for a path the caller did not give."""
    return f"{'<input>' if path is None else path}:{line}"


@dataclass(frozen=True)
class Line:
    number: int  # 1-based, counting blank lines too
    raw: bytes  # without the line ending and the BOM
    # Not a field (no annotation): only LastLine sets it, so a line costs no more.
    unterminated = False


class LastLine(Line):
    """The last line of a file that does not end in a newline: when it fails
    to parse, the file was most likely cut short."""

    unterminated = True


@dataclass(frozen=True)
class Block:
    """Whole lines of a file, with the number of the first one. Blocks are what
    workers receive, so they carry bytes, not parsed lines."""

    first_number: int
    data: bytes

    def lines(self) -> Iterator[Line]:
        """The non-blank lines, CRLF endings tolerated."""
        number = self.first_number
        pieces = self.data.split(b"\n")
        tail = pieces.pop()  # after the last newline: b"", or a last line without one
        for raw in pieces:
            if raw.endswith(b"\r"):
                raw = raw[:-1]
            if raw and not raw.isspace():
                yield Line(number, raw)
            number += 1
        if tail and not tail.isspace():
            yield LastLine(number, tail[:-1] if tail.endswith(b"\r") else tail)

    @property
    def line_count(self) -> int:
        return self.data.count(b"\n") + (0 if self.data.endswith(b"\n") or not self.data else 1)


# The name that stands for standard input, as in every Unix tool.
STDIN = "-"


class StdinReader:
    """Standard input as a batch file: read once, front to back, never
    seeked (a pipe cannot be). The first bytes are held back for the checks
    ``open_input`` makes, then handed out first. ``close`` leaves standard
    input open; ``size`` counts the bytes read so far."""

    name = STDIN

    def __init__(self, raw: BinaryIO):
        self._raw = raw
        self._head = b""
        self.size = 0  # bytes handed out
        self._copy: BinaryIO | None = None  # where every byte handed out is also written (copy_stdin)

    def _peek(self, n: int) -> bytes:
        while len(self._head) < n:
            more = self._raw.read(n - len(self._head))
            if not more:
                break
            self._head += more
        return self._head[:n]

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            data, self._head = self._head + self._raw.read(), b""
        elif self._head:
            data, self._head = self._head[:size], self._head[size:]
            if len(data) < size:
                data += self._raw.read(size - len(data))
        else:
            data = self._raw.read(size)
        self.size += len(data)
        if self._copy is not None and data:
            self._copy.write(data)
        return data

    def seekable(self) -> bool:
        return False

    def seek(self, offset: int, whence: int = 0) -> int:
        raise InputError(f"{STDIN}: standard input cannot be read out of order (a pipe cannot seek); save it to a file first")

    def close(self) -> None:
        pass  # standard input stays open: it is not ours to close

    def __enter__(self) -> "StdinReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# (sys.stdin, its reader): a process reads standard input once, so every
# open_input("-") before the first byte is used gets the same reader.
_STDIN_READER: tuple[object, StdinReader] | None = None


def _open_stdin() -> StdinReader:
    global _STDIN_READER
    stream = sys.stdin
    if _STDIN_READER is not None and _STDIN_READER[0] is stream:
        reader = _STDIN_READER[1]
        if reader.size:
            raise InputError(f"{STDIN}: standard input was read already; it can be read only once")
        return reader
    raw = getattr(stream, "buffer", None)
    if raw is None:
        raise InputError(f"{STDIN}: there is no standard input to read")
    reader = StdinReader(raw)
    _STDIN_READER = (stream, reader)
    return reader


@contextlib.contextmanager
def copy_stdin(path: str) -> Iterator[None]:
    """While the block runs, every byte read from standard input is also
    written to ``path`` (a new file); what is left unread at the end is
    copied too. For a command that must read its input twice (check it, then
    upload it): the pipe is still read once."""
    reader = _open_stdin()
    if reader.size:
        raise InputError(f"{STDIN}: standard input was read already; it can be read only once")
    try:
        copy = open(path, "xb")
    except OSError as exc:
        raise InputError(f"{path}: cannot write a copy of standard input ({exc.strerror or exc})") from None
    reader._copy = copy
    try:
        yield
        while reader.read(BLOCK_BYTES):
            pass
    finally:
        reader._copy = None
        copy.close()


def save_stdin(directory: str | os.PathLike[str]) -> str:
    """Standard input saved whole into ``directory`` as ``stdin-HASH.jsonl``
    (the first 12 hex digits of its sha256), for a command that reads its
    input more than once or again on a later run (``run``, ``pilot``). Named
    by content, so the same input piped again finds its earlier copy, and a
    different one never overwrites it. Returns the copy's path."""
    import hashlib

    with open_input(STDIN) as reader:  # the head checks (compressed, binary) as for any input
        os.makedirs(directory, exist_ok=True)
        digest = hashlib.sha256()
        partial = os.path.join(os.fspath(directory), ".stdin.partial")
        with atomic_write(partial) as out:
            while chunk := reader.read(BLOCK_BYTES):
                digest.update(chunk)
                out.write(chunk)
    path = os.path.join(os.fspath(directory), f"stdin-{digest.hexdigest()[:12]}.jsonl")
    if os.path.exists(path):
        os.unlink(partial)  # the same bytes, saved by an earlier run
    else:
        os.replace(partial, path)
    return path


def input_size(handle: BinaryIO) -> int:
    """The bytes of a batch file opened by ``open_input``: its size, or for
    standard input the bytes read so far (a pipe's size is known only at its end)."""
    if isinstance(handle, StdinReader):
        return handle.size
    return os.fstat(handle.fileno()).st_size


def open_input(path: str | os.PathLike[str]) -> BinaryIO:
    """Open a batch file for reading, or raise InputError with a one-line
    reason. ``-`` is standard input (a ``StdinReader``)."""
    name = os.fspath(path)
    if name == STDIN:
        reader = _open_stdin()
        try:
            _check_head(name, reader._peek(6))
        except OSError as exc:
            raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
        return reader  # type: ignore[return-value]
    if os.path.isdir(name):
        raise InputError(f"{name}: is a directory, not a batch file")
    try:
        handle = open(name, "rb")
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory, not a batch file") from None
    except PermissionError:
        raise InputError(f"{name}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot open ({exc.strerror or exc})") from None
    try:
        head = handle.read(6)
        handle.seek(0)
    except OSError as exc:
        handle.close()
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    try:
        _check_head(name, head)
    except InputError:
        handle.close()
        raise
    return handle


def _check_head(name: str, head: bytes) -> None:
    """InputError when the first bytes show the file is no UTF-8 text."""
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(f"{name}: is UTF-16 or UTF-32, not UTF-8; re-encode it as UTF-8")
    for magic, kind, tool in COMPRESSED:
        if head.startswith(magic) and (kind != "bzip2" or head[3:4].isdigit()):
            raise InputError(f"{name}: is {kind}-compressed, not JSON lines; decompress it first ({tool})")


def read_blocks(handle: BinaryIO, block_bytes: int = BLOCK_BYTES, name: str = "input") -> Iterator[Block]:
    """Blocks of about ``block_bytes`` of whole lines, in order. A UTF-8 BOM at
    the start of the file is dropped. Memory stays at about one block."""

    def chunks() -> Iterator[bytes]:
        data = _read(handle, block_bytes, name)
        if data.startswith(BOM):
            data = data[len(BOM):]
        while data:
            yield data
            data = _read(handle, block_bytes, name)

    return _whole_lines(chunks())


def _whole_lines(chunks: Iterator[bytes]) -> Iterator[Block]:
    """Blocks of the whole lines in ``chunks`` (bytes read in order), numbered
    from 1; what follows the last newline comes last, as a block of its own."""
    number = 1
    pending = b""
    for data in chunks:
        data = pending + data
        cut = data.rfind(b"\n")
        if cut < 0:
            pending = data  # a line longer than a block: keep reading
            continue
        block = Block(number, data[: cut + 1])
        pending = data[cut + 1:]
        number += block.line_count
        yield block
    if pending:
        yield Block(number, pending)


def read_lines(path: str | os.PathLike[str]) -> Iterator[Line]:
    """The non-blank lines of the file at ``path``, streamed."""
    with open_input(path) as handle:
        for block in read_blocks(handle, name=os.fspath(path)):
            yield from block.lines()


def _read(handle: BinaryIO, size: int, name: str) -> bytes:
    try:
        return handle.read(size)
    except OSError as exc:
        raise InputError(f"{name}: read failed ({exc.strerror or exc})") from None


# Bytes first read to find a line's end; the steps double from there, so
# about the line itself is read, however long (what --sample relies on).
SCAN_BYTES = 256


def line_start_at_or_after(handle: BinaryIO, offset: int, name: str = "input") -> int | None:
    """The byte where the first line beginning at or after ``offset`` begins,
    or None when no line begins there (end of file)."""
    if offset <= 0:
        return 0
    handle.seek(offset - 1)
    position = offset - 1
    step = SCAN_BYTES
    while True:
        data = _read(handle, step, name)
        if not data:
            return None
        cut = data.find(b"\n")
        if cut >= 0:
            return position + cut + 1
        position += len(data)
        step *= 2


def read_range(handle: BinaryIO, start: int, end: int, block_bytes: int = BLOCK_BYTES, name: str = "input") -> Iterator[Block]:
    """Blocks of the whole lines that begin at a byte in ``[start, end)``,
    numbered from 1 within the range. A line straddling ``end`` is read to
    its end; one straddling ``start`` belongs to the range before. So ranges
    that cut a file anywhere partition its lines: none lost, none doubled
    (what ``--cluster`` relies on). The UTF-8 BOM is dropped as in
    ``read_blocks``."""
    position = line_start_at_or_after(handle, start, name)
    if position is None or position >= end:
        return
    handle.seek(position)
    if position == 0:
        if _read(handle, len(BOM), name) == BOM:
            position = len(BOM)  # line 1 begins here, and belongs to this range
        handle.seek(position)
    left = max(1, end - position)  # bytes of the range still to read

    def chunks() -> Iterator[bytes]:
        nonlocal left
        while left > 0:
            data = _read(handle, min(block_bytes, left), name)
            if not data:
                return
            left -= len(data)
            if left <= 0:
                # At the end of the range: finish the line that straddles it.
                step = SCAN_BYTES
                while not data.endswith(b"\n"):
                    more = _read(handle, step, name)
                    if not more:
                        break
                    cut = more.find(b"\n")
                    data += more if cut < 0 else more[: cut + 1]
                    step *= 2
            yield data

    yield from _whole_lines(chunks())
