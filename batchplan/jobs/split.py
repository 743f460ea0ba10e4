"""Split a batch file into files the Batch API accepts.

A batch file takes one model, one url and one thinking mode, at most 50,000
requests and 500 MB. ``split_file`` groups lines by (model, url, thinking) and
cuts each group into parts under the line and byte limits. Lines are copied
byte for byte (the line as read, without its line ending or a BOM, plus
``\\n``), whole, and in their original order within each group.

The file is streamed: one open handle per group (at most ``MAX_OPEN`` at
once), rolling to a new part at a limit. Parts are written under temporary
names and renamed only when the whole file has been read, then the manifest
is written; a failure leaves no half-written output behind.

Lines that cannot go into any batch file (invalid, a repeated custom_id, or
larger than a part may be) are not written; the manifest lists them.

Split does not count tokens: a request over its model's token limits, or a
model the region does not offer, stays in its part. ``batchplan validate``
each part to check those.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from batchplan.catalog.catalog import Catalog, default_catalog
from batchplan.errors import SplitError
from batchplan.planning.output import is_thinking
from batchplan.planning.reading import STDIN, open_input, read_blocks
from batchplan.planning.validate import LineError, parse_line

SCHEMA = "batchplan.split/1"
# Rejected lines listed in the manifest; the count beyond it stays exact.
KEEP_REJECTED = 10_000
# Part files open at once; the least recently written is closed (and later
# reopened to append) past this, so many groups do not exhaust file handles.
MAX_OPEN = 64


@dataclass(frozen=True)
class PartFile:
    """One batch file written by split."""

    path: str
    model: str
    url: str
    thinking: bool
    lines: int
    bytes: int
    first_line: int  # line numbers in the source file
    last_line: int
    sha256: str


@dataclass(frozen=True)
class Rejected:
    line: int
    reason: str


@dataclass
class Manifest:
    """What split wrote, and which source lines it left out."""

    path: str  # the manifest file
    source: str  # absolute path of the source file
    source_sha256: str
    source_bytes: int
    source_lines: int  # non-blank lines read
    max_lines: int
    max_bytes: int
    files: list[PartFile] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)  # the first KEEP_REJECTED
    rejected_count: int = 0

    @property
    def ok(self) -> bool:
        return self.rejected_count == 0

    def document(self) -> dict:
        """The manifest as JSON data (schema ``batchplan.split/1``). Part files
        are named relative to the manifest's folder."""
        return {
            "schema": SCHEMA,
            "source": {
                "path": self.source,
                "sha256": self.source_sha256,
                "bytes": self.source_bytes,
                "lines": self.source_lines,
            },
            "limits": {"max_lines": self.max_lines, "max_bytes": self.max_bytes},
            "files": [
                {
                    "file": os.path.basename(p.path),
                    "model": p.model,
                    "url": p.url,
                    "thinking": p.thinking,
                    "lines": p.lines,
                    "bytes": p.bytes,
                    "first_line": p.first_line,
                    "last_line": p.last_line,
                    "sha256": p.sha256,
                }
                for p in self.files
            ],
            "rejected": [{"line": r.line, "reason": r.reason} for r in self.rejected],
            "rejected_count": self.rejected_count,
        }


def manifest_path(path, out_dir) -> str:
    return os.path.join(os.fspath(out_dir), f"{_stem(path)}.manifest.json")


def _stem(path) -> str:
    """What part and manifest names begin with: the source's stem; ``stdin`` for ``-``."""
    return "stdin" if os.fspath(path) == STDIN else Path(path).stem


class _HashingReader:
    """A read-only handle that hashes what passes through it, so the source's
    sha256 costs no second read."""

    def __init__(self, handle: BinaryIO):
        self.handle = handle
        self.sha256 = hashlib.sha256()
        self.bytes = 0

    def read(self, size: int = -1) -> bytes:
        data = self.handle.read(size)
        self.sha256.update(data)
        self.bytes += len(data)
        return data


class _Part:
    """A part being written, under a temporary name until the split ends."""

    def __init__(self, out_dir: str, name: str):
        self.name = name
        self.temp, self.handle = _create_temp(out_dir, name, binary=True)
        self.lines = 0
        self.bytes = 0
        self.sha256 = hashlib.sha256()
        self.first_line = 0
        self.last_line = 0

    def write(self, number: int, data: bytes) -> None:
        if self.handle is None:
            self.handle = open(self.temp, "ab")
        self.handle.write(data)
        self.sha256.update(data)
        if not self.lines:
            self.first_line = number
        self.lines += 1
        self.bytes += len(data)
        self.last_line = number

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


@dataclass
class _Group:
    model: str
    url: str
    thinking: bool
    base: str  # file name without .part-NNN.jsonl
    max_lines: int
    max_bytes: int
    parts: list[_Part] = field(default_factory=list)

    @property
    def current(self) -> _Part | None:
        return self.parts[-1] if self.parts else None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _slug(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("._") or "_"


def split_file(
    path,
    out_dir,
    *,
    max_lines: int | None = None,
    max_bytes: int | None = None,
    catalog: Catalog | None = None,
    force: bool = False,
    on_progress: Callable[[int], None] | None = None,
    check_duplicates: bool = True,
) -> Manifest:
    """Split the batch file at ``path`` into parts in ``out_dir`` (created if
    missing) and write ``<stem>.manifest.json`` beside them.

    Each part holds one (model, url, thinking mode), at most ``max_lines``
    lines and ``max_bytes`` bytes (defaults: the catalog's batch limits, and
    the test model's smaller ones for its group). Parts are named
    ``<stem>.<model>.<thinking|nothinking>.part-001.jsonl``.

    ``check_duplicates=False`` skips the repeated-custom_id check, whose index
    grows with the file: for a caller that has removed repeats already
    (``jobs.run``).

    Raises ``reading.InputError`` for an unreadable source, ``SplitError`` when
    outputs exist and ``force`` is false, when the source holds no requests, or
    when the output folder cannot be written, and ValueError for limits the
    Batch API would not accept.
    """
    catalog = catalog or default_catalog()
    limits = catalog.batch_limits
    max_lines = limits.max_requests if max_lines is None else max_lines
    max_bytes = limits.max_file_bytes if max_bytes is None else max_bytes
    if not 1 <= max_lines <= limits.max_requests:
        raise ValueError(f"max lines must be from 1 to {limits.max_requests:,} (the Batch API limit)")
    if not 1 <= max_bytes <= limits.max_file_bytes:
        raise ValueError(f"max bytes must be from 1 to {limits.max_file_bytes:,} (the Batch API limit)")

    source = os.fspath(path)
    out = os.fspath(out_dir)
    stem = _stem(source)
    manifest_file = manifest_path(source, out)
    handle = open_input(source)  # fail on an unreadable source before touching the output folder
    try:
        _prepare_folder(out)
        stale = _existing_outputs(out, stem, manifest_file)
        if stale and not force:
            raise SplitError(f"{stale[0]}: already exists", hint="force")
        old_parts = _parts_of_old_manifest(manifest_file, stem) if force else []
        reader = _HashingReader(handle)
        manifest = Manifest(manifest_file, source if source == STDIN else os.path.abspath(source), "", 0, 0, max_lines, max_bytes)
        groups = _split(reader, source, out, stem, manifest, catalog, max_lines, max_bytes, on_progress,
                        check_duplicates)
    finally:
        handle.close()
    manifest.source_sha256 = reader.sha256.hexdigest()
    manifest.source_bytes = reader.bytes
    if manifest.source_lines == 0:
        _discard(groups)
        raise SplitError(f"{source}: holds no requests; nothing to split")
    try:
        for group in groups:
            for part in group.parts:
                final = os.path.join(out, f"{part.name}")
                if os.path.exists(final) and not force:
                    raise SplitError(f"{final}: already exists", hint="force")
        for group in groups:
            for part in group.parts:
                final = os.path.join(out, part.name)
                os.replace(part.temp, final)
                part.temp = final
                manifest.files.append(PartFile(final, group.model, group.url, group.thinking, part.lines, part.bytes,
                                               part.first_line, part.last_line, part.sha256.hexdigest()))
    except OSError as exc:
        _discard(groups)
        raise SplitError(f"{out}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        _discard(groups)
        raise
    _write_json(manifest_file, manifest.document())
    # Parts an earlier split wrote that this one did not: removing them keeps
    # the folder and the manifest in agreement (only names split itself makes).
    written = {os.path.basename(p.path) for p in manifest.files}
    for name in old_parts:
        if name not in written:
            try:
                os.remove(os.path.join(out, name))
            except FileNotFoundError:
                pass
    return manifest


def _split(reader, source, out, stem, manifest, catalog, max_lines, max_bytes, on_progress,
           check_duplicates: bool = True) -> list[_Group]:
    limits = catalog.batch_limits
    groups: dict[tuple[str, str, bool], _Group] = {}
    bases: set[str] = set()
    open_parts: OrderedDict[int, _Part] = OrderedDict()  # by id(part), least recently written first
    custom_ids: dict[str, int] = {}

    def reject(number: int, reason: str) -> None:
        manifest.rejected_count += 1
        if len(manifest.rejected) < KEEP_REJECTED:
            manifest.rejected.append(Rejected(number, reason))

    try:
        for block in read_blocks(reader, name=source):
            for line in block.lines():
                manifest.source_lines += 1
                number = line.number
                size = len(line.raw)
                if size > limits.max_line_bytes:
                    reject(number, f"line is {size:,} bytes, over the {limits.max_line_bytes:,}-byte limit per line")
                    continue
                parsed = parse_line(line)
                if isinstance(parsed, LineError):
                    reject(number, parsed.reason)
                    continue
                if check_duplicates:
                    first = custom_ids.setdefault(parsed.custom_id, number)
                    if first != number:
                        reject(number, f"custom_id {parsed.custom_id!r} is already used on line {first}")
                        continue
                model = parsed.model
                thinking = False if parsed.is_embedding else is_thinking(parsed.body, catalog.model(model))
                key = (model, parsed.url, thinking)
                group = groups.get(key)
                if group is None:
                    group = groups[key] = _new_group(key, stem, bases, limits, max_lines, max_bytes)
                data = line.raw + b"\n"
                if len(data) > group.max_bytes:
                    reject(number, f"line is {len(data):,} bytes with its newline, more than a part may hold "
                                   f"({group.max_bytes:,} bytes)")
                    continue
                part = group.current
                if part is None or part.lines + 1 > group.max_lines or part.bytes + len(data) > group.max_bytes:
                    if part is not None:
                        part.close()
                        open_parts.pop(id(part), None)
                    part = _Part(out, f"{group.base}.part-{len(group.parts) + 1:03d}.jsonl")
                    group.parts.append(part)
                part.write(number, data)
                open_parts[id(part)] = part
                open_parts.move_to_end(id(part))
                if len(open_parts) > MAX_OPEN:
                    _, oldest = open_parts.popitem(last=False)
                    oldest.close()
            if on_progress is not None:
                on_progress(len(block.data))
        for part in open_parts.values():
            part.close()
    except OSError as exc:
        _discard(groups.values())
        raise SplitError(f"{out}: cannot write ({exc.strerror or exc})") from None
    except BaseException:
        _discard(groups.values())
        raise
    return list(groups.values())


def _new_group(key, stem, bases, limits, max_lines, max_bytes) -> _Group:
    model, url, thinking = key
    base = f"{stem}.{_slug(model)}.{'thinking' if thinking else 'nothinking'}"
    if base in bases:  # the same model and mode on another url
        base = f"{base}.{_slug(url.rsplit('/', 1)[-1])}"
    unique, n = base, 1
    while unique in bases:
        n += 1
        unique = f"{base}-{n}"
    bases.add(unique)
    if model == limits.test_model:
        max_lines = min(max_lines, limits.test_max_requests)
        max_bytes = min(max_bytes, limits.test_max_file_bytes)
    return _Group(model, url, thinking, unique, max_lines, max_bytes)


def _prepare_folder(out: str) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise SplitError(f"{out}: exists and is not a folder")
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as exc:
        raise SplitError(f"{out}: cannot create folder ({exc.strerror or exc})") from None


def _part_pattern(stem: str) -> str:
    return f"{glob.escape(stem)}.*.part-[0-9][0-9][0-9]*.jsonl"


def _existing_outputs(out: str, stem: str, manifest_file: str) -> list[str]:
    """Outputs of an earlier split of the same file, which this one could overwrite."""
    found = [manifest_file] if os.path.exists(manifest_file) else []
    return found + sorted(glob.glob(os.path.join(glob.escape(out), _part_pattern(stem))))


def _parts_of_old_manifest(manifest_file: str, stem: str) -> list[str]:
    """Part names an earlier manifest lists, limited to names split makes."""
    try:
        with open(manifest_file, encoding="utf-8") as handle:
            doc = json.load(handle)
        names = [f["file"] for f in doc.get("files", [])]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []
    pattern = re.compile(re.escape(stem) + r"\.[^/\\]+\.part-\d{3,}\.jsonl")
    return [n for n in names if isinstance(n, str) and pattern.fullmatch(n)]


def _discard(groups) -> None:
    """Close and remove every temporary part."""
    for group in groups:
        for part in group.parts:
            part.close()
            if part.temp.endswith(".tmp"):
                try:
                    os.remove(part.temp)
                except FileNotFoundError:
                    pass


def _create_temp(folder: str, name: str, binary: bool):
    """A new hidden temporary file beside its final name. Unlike mkstemp it
    gets the usual permissions (umask), which the renamed file keeps."""
    for _ in range(100):
        temp = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.tmp")
        try:
            handle = open(temp, "xb") if binary else open(temp, "x", encoding="utf-8")
        except FileExistsError:
            continue
        return temp, handle
    raise OSError(f"cannot create a temporary file in {folder}")


def _write_json(path: str, doc: dict) -> None:
    temp, handle = _create_temp(os.path.dirname(path) or ".", os.path.basename(path), binary=False)
    try:
        with handle:
            json.dump(doc, handle, ensure_ascii=False, indent=2)
            handle.write("\n")
        os.replace(temp, path)
    except BaseException:
        try:
            os.remove(temp)
        except FileNotFoundError:
            pass
        raise


# -- --test -----------------------------------------------------------------------

def write_test_copy(src: str, dest: str, test_model: str, test_url: str) -> int:
    """Copy a batch file with every request sent to the free test model on its
    url, custom_ids kept; the number of requests. Lines must be valid JSON
    objects (the caller has validated the file)."""
    import orjson

    from batchplan.planning.reading import read_lines

    count = 0
    with open(dest, "wb") as out:
        for line in read_lines(src):
            doc = orjson.loads(line.raw)
            doc["url"] = test_url
            body = doc.get("body")
            if isinstance(body, dict):
                body["model"] = test_model
            out.write(json.dumps(doc, ensure_ascii=False).encode("utf-8") + b"\n")
            count += 1
    return count
