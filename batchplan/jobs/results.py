"""Batch API result lines: read an output or error file, line by line, and
classify each line as a success (with its usage) or a failure (with its code).

Shared by ``reconcile``, ``calibrate`` and everything else that reads batch
output; streamed, so a file of any size reads in flat memory.

Output line (recorded from the real service, 2026-04)::

    {"id", "custom_id", "response": {"status_code": 200, "request_id",
     "body": {..., "usage": {"completion_tokens", "prompt_tokens", "total_tokens"}, "model"}},
     "error": null}

A failed line has a non-null ``error`` with ``code``/``message``. The shape of
an error-file line is UNCONFIRMED (the docs' own helper reads ``error_code``/
``error_message``), so both are accepted, and so is a ``response.status_code``
other than 200.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, BinaryIO, Iterator

import orjson

from batchplan.planning.reading import InputError, at_line, open_input, read_blocks
from batchplan.planning.validate import _kind, json_reason

OUTPUT = "output"
ERRORS = "errors"


class ReconcileError(InputError, ValueError):
    """An output or error file that cannot be used; one line naming file, line and reason."""


@dataclass(frozen=True)
class Result:
    """One line of a Batch output or error file, classified."""

    line: int
    custom_id: str | None
    ok: bool
    prompt_tokens: int | None = None  # None: no usable usage on a successful line
    completion_tokens: int | None = None
    model: str | None = None  # response.body.model
    code: str | None = None
    message: str | None = None
    source: str = OUTPUT  # which file: output | errors


def _int(value: Any) -> int | None:
    return value if type(value) is int and value >= 0 else None


def classify(doc: dict[str, Any], line: int, source: str = OUTPUT) -> Result:
    """Success or failure of one result line (already parsed). Never raises."""
    cid = doc.get("custom_id")
    cid = cid if isinstance(cid, str) else (str(cid) if isinstance(cid, int) and not isinstance(cid, bool) else None)
    response = doc.get("response")
    body = response.get("body") if isinstance(response, dict) else None
    body = body if isinstance(body, dict) else {}
    model = body.get("model") if isinstance(body.get("model"), str) else None
    code, message = _failure(doc, response, body)
    if code is not None or message is not None:
        return Result(line, cid, False, model=model, code=code, message=message, source=source)
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return Result(line, cid, True, model=model, source=source)
    prompt = _int(usage.get("prompt_tokens"))
    # Embedding responses have no completion_tokens: nothing was generated.
    completion = _int(usage.get("completion_tokens", 0))
    if prompt is None or completion is None:
        return Result(line, cid, True, model=model, source=source)
    return Result(line, cid, True, prompt, completion, model, source=source)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _failure(doc: dict[str, Any], response: Any, body: dict[str, Any]) -> tuple[str | None, str | None]:
    """(code, message) when the line failed, else (None, None)."""
    error = doc.get("error")
    if isinstance(error, dict) and error:
        code = error.get("code", error.get("error_code"))
        message = error.get("message", error.get("error_message"))
        return _text(code) or "error", _text(message)
    if error not in (None, {}, ""):
        return "error", _text(error)
    if doc.get("error_code") is not None or doc.get("error_message") is not None:
        return _text(doc.get("error_code")) or "error", _text(doc.get("error_message"))
    if not isinstance(response, dict):
        return "no_response", "the line has neither a response nor an error"
    status = response.get("status_code")
    if status is not None and str(status) != "200":
        inner = body.get("error") if isinstance(body.get("error"), dict) else {}
        code = inner.get("code") or body.get("code") or f"http_{status}"
        message = inner.get("message") or body.get("message") or f"status code {status}"
        return _text(code), _text(message)
    return None, None


def json_lines(handle: BinaryIO, name: str, error: type[ValueError]) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line, streamed block by block."""
    try:
        for block in read_blocks(handle, name=name):
            for line in block.lines():
                try:
                    doc = orjson.loads(line.raw)
                except orjson.JSONDecodeError as exc:
                    raise error(at_line(name, line.number, json_reason(line, exc))) from None
                if not isinstance(doc, dict):
                    raise error(at_line(name, line.number, f"not a JSON object (found {_kind(doc)})"))
                yield line.number, doc
    except InputError as exc:
        raise error(str(exc)) from None


def open_results(path: str, error: type[ValueError]) -> BinaryIO:
    try:
        return open_input(path)
    except InputError as exc:
        raise error(str(exc)) from None


def read_results(path: str, source: str = OUTPUT) -> Iterator[Result]:
    """The classified lines of a Batch output or error file, streamed.
    Raises ReconcileError (one line) for an unreadable file or a bad line."""
    name = os.fspath(path)
    with open_results(name, ReconcileError) as handle:
        for number, doc in json_lines(handle, name, ReconcileError):
            yield classify(doc, number, source)
