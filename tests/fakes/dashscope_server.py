"""A fake DashScope (Alibaba Cloud Model Studio) OpenAI-compatible files + batches API.

This is a *real* HTTP server (stdlib ``http.server.ThreadingHTTPServer`` on
127.0.0.1, port 0, served from a daemon thread) so that the unmodified
``openai`` SDK can be pointed at it::

    with FakeDashScope(api_key="sk-test") as server:
        client = OpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
        f = client.files.create(file=open("in.jsonl", "rb"), purpose="batch")
        b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions",
                                  completion_window="24h")
        while client.batches.retrieve(b.id).status not in ("completed", "failed", ...):
            pass  # every retrieve advances the batch exactly one step

Behaviour follows the DashScope docs and the real responses recorded in
``tests/fixtures/batch/real_samples.jsonl`` (recorded from the real service,
2026-04).  Everything that is NOT backed by a doc or a recording is marked
``ASSUMED`` / ``UNCONFIRMED`` in a comment next to it.

Lifecycle (deterministic: no timers, no sleeps).  ``POST /batches`` returns
``validating``; then each ``GET /batches/{id}`` advances the batch one step and
returns the new state::

    validating -> in_progress (validation passed; request_counts.total = N)
                  | failed     (validation failed; ``errors`` set)
    in_progress -> in_progress   x ``steps`` (default 2): completed/failed grow
    in_progress -> finalizing
    finalizing  -> completed   (output / error files written here, not before)
    cancelling  -> cancelled   (after ``POST /batches/{id}/cancel``)

With the default ``steps=2`` a batch of valid lines is ``completed`` on the 5th
retrieve.  ``list`` and ``cancel`` never advance a batch.

Fault injection (``inject``) lets tests prove client retries and crash
recovery; see :meth:`FakeDashScope.inject`.
"""

from __future__ import annotations

import collections
import copy
import email.parser
import email.policy
import hmac
import json
import math
import random
import re
import socket
import threading
import time
import uuid
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple, Union
from urllib.parse import parse_qs, urlsplit

__all__ = [
    "API_PREFIX",
    "ALLOWED_URLS",
    "TEST_MODEL",
    "TEST_URL",
    "FakeDashScope",
    "RequestRecord",
    "default_prompt_tokens",
    "default_completion_tokens",
    "fake_dashscope_fixture",
]

API_PREFIX = "/compatible-mode/v1"

CHAT_URL = "/v1/chat/completions"
EMBEDDINGS_URL = "/v1/embeddings"
TEST_URL = "/v1/chat/ds-test"
ALLOWED_URLS = (CHAT_URL, EMBEDDINGS_URL, TEST_URL)
TEST_MODEL = "batch-test-model"

# Documented file limits [BATCH].
MAX_LINES = 50_000
MAX_LINE_BYTES = 6 * 1024 * 1024
MAX_TEST_LINES = 100
MAX_TEST_FILE_BYTES = 1024 * 1024

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
ALL_STATUSES = (
    "validating",
    "in_progress",
    "finalizing",
    "completed",
    "failed",
    "expired",
    "cancelling",
    "cancelled",
)
# Status -> timestamp key set when entering it.
_STATUS_TS = {
    "in_progress": "in_progress_at",
    "finalizing": "finalizing_at",
    "completed": "completed_at",
    "failed": "failed_at",
    "expired": "expired_at",
    "cancelled": "cancelled_at",
}

_COMPLETION_WINDOW_RE = re.compile(r"^(\d+)([hd])$")

FAULT_KINDS = (
    "drop_after_commit",
    "drop_before_commit",
    "hang",
    "hang_after_commit",
)

RequestRecord = collections.namedtuple("RequestRecord", ["method", "path", "status"])
RequestRecord.__doc__ = (
    "One served request: method, path relative to the API root (e.g. '/batches', no query "
    "string), and the HTTP status sent, or None when no response was sent (drop/hang)."
)


def default_prompt_tokens(body: Mapping[str, Any]) -> int:
    """STAND-IN prompt token count, NOT DashScope's real counting rule.

    Real DashScope bills the ChatML-rendered prompt (see dashscope-facts.md §3);
    tests that care pass batchplan's own counter as ``prompt_tokens_fn``.
    """
    if "messages" in body:
        return len(json.dumps(body["messages"])) // 4
    return len(json.dumps(body.get("input", ""))) // 4  # embeddings


def default_completion_tokens(custom_id: str, body: Mapping[str, Any]) -> int:
    """Deterministic completion token count: min(max_tokens or 50, 10 + crc32(custom_id) % 40)."""
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        max_tokens = 50
    return min(int(max_tokens), 10 + (zlib.crc32(str(custom_id).encode("utf-8")) % 40))


class _Fault:
    __slots__ = ("method", "prefix", "kind", "remaining", "seconds", "code", "message")

    def __init__(self, method, prefix, kind, remaining, seconds, code, message):
        self.method = method
        self.prefix = prefix
        self.kind = kind
        self.remaining = remaining
        self.seconds = seconds
        self.code = code
        self.message = message

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"_Fault({self.method} {self.prefix} {self.kind} x{self.remaining})"


class _Response:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(self, status: int, body: bytes, content_type: str = "application/json", headers=None):
        self.status = status
        self.body = body
        self.content_type = content_type
        self.headers = headers or {}


class _Run:
    """Internal per-batch state that is not part of the public batch object."""

    def __init__(self, steps: int):
        self.steps = steps
        self.progress_step = 0
        self.lines: List[Dict[str, Any]] = []  # validated input lines, input order
        self.processed = 0
        self.ok_lines: List[str] = []  # serialized output lines, processing order
        self.err_lines: List[str] = []  # serialized error lines, processing order
        self.number = 0  # 1-based creation order
        self.last_step = 0.0  # clock() at the last step (step_seconds mode)


class _ClientError(Exception):
    def __init__(self, status: int, message: str, code: str, type_: str = "invalid_request_error", param=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.type = type_
        self.param = param


class FakeDashScope:
    """Fake DashScope OpenAI-compatible Batch API on a loopback HTTP server.

    Constructor arguments (all keyword-able):

    * ``api_key``: the only accepted ``Authorization: Bearer`` token.
    * ``steps``: in_progress steps per batch (request_counts grow over them).
    * ``seed``: seeds ids and the output shuffling (deterministic per seed).
    * ``prompt_tokens_fn(body) -> int``: prompt tokens for each successful line
      (chat and embedding bodies alike); default :func:`default_prompt_tokens`.
    * ``completion_tokens_fn(custom_id, body) -> int``; default
      :func:`default_completion_tokens`.
    * ``fail_custom_ids``: set of custom_ids whose line fails (goes to the error
      file).  May also be a mapping custom_id -> {"status_code", "code",
      "message"} to choose the failure.
    * ``clock() -> int``: Unix seconds for timestamps (default ``time.time``).
    * ``retry_after_ms``: value of the ``Retry-After-Ms`` header on injected
      429/5xx responses (default 1: the openai SDK ignores a 0 there and would
      back off for ~0.5 s instead).
    * ``empty_list_data_null``: the real service answers an empty
      ``GET /batches`` with ``"data": null`` (recorded); keep True to mimic it.
    * ``instant``: a batch runs to its end on its first retrieve (validation,
      every line, files): the mode for benchmarks and many-part jobs.
    * ``expire_batches``: {batch number: fraction}: the Nth batch created
      (1-based) processes that fraction of its lines on its first in_progress
      retrieve, then expires (partial output and error files, as a
      cancellation writes them).

    * ``step_seconds``: a batch advances over time instead of per retrieve:
      a retrieve moves it one step only when ``clock()`` has moved at least
      this far since its last step (or its create); drive ``clock`` from a
      test to follow a job through hours without sleeping.

    A ``fail_custom_ids`` mapping value may carry ``"times": N``: that line
    fails on its first N runs (in any batch) and succeeds after, as a
    retryable error does.
    """

    def __init__(
        self,
        api_key: str = "sk-test",
        *,
        steps: int = 2,
        seed: int = 0,
        prompt_tokens_fn: Optional[Callable[[Mapping[str, Any]], int]] = None,
        completion_tokens_fn: Optional[Callable[[str, Mapping[str, Any]], int]] = None,
        fail_custom_ids: Optional[Union[Iterable[str], Mapping[str, Mapping[str, Any]]]] = None,
        clock: Optional[Callable[[], float]] = None,
        retry_after_ms: int = 1,
        empty_list_data_null: bool = True,
        instant: bool = False,
        expire_batches: Optional[Mapping[int, float]] = None,
        step_seconds: Optional[float] = None,
    ):
        self.api_key = api_key
        self.steps = steps
        self.seed = seed
        self.prompt_tokens_fn = prompt_tokens_fn or default_prompt_tokens
        self.completion_tokens_fn = completion_tokens_fn or default_completion_tokens
        if fail_custom_ids is None:
            fail_custom_ids = set()
        elif not isinstance(fail_custom_ids, Mapping):
            fail_custom_ids = set(fail_custom_ids)
        self.fail_custom_ids = fail_custom_ids
        self.clock = clock or time.time
        self.retry_after_ms = retry_after_ms
        self.empty_list_data_null = empty_list_data_null
        self.instant = instant
        self.expire_batches = dict(expire_batches or {})
        self.step_seconds = step_seconds
        self._line_runs: collections.Counter = collections.Counter()  # custom_id -> times it ran

        self._lock = threading.RLock()
        self._rng = random.Random(seed)
        #: file id -> {"id", "bytes" (raw content, bytes), "purpose", "filename", "created_at"}
        self.files: Dict[str, Dict[str, Any]] = {}
        #: batch id -> public batch object (dict, exactly what GET returns); insertion = creation order
        self.batches: Dict[str, Dict[str, Any]] = {}
        self._runs: Dict[str, _Run] = {}
        self._forced_validation: Dict[str, List[Dict[str, Any]]] = {}
        self._faults: List[_Fault] = []
        self._requests: List[RequestRecord] = []

        self._stop_event = threading.Event()
        self._httpd: Optional[ThreadingHTTPServer] = None
        self._thread: Optional[threading.Thread] = None
        self._conns: set = set()
        self._conns_lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("FakeDashScope is not started")
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}{API_PREFIX}"

    def start(self) -> "FakeDashScope":
        if self._httpd is not None:
            return self
        self._stop_event.clear()
        handler = type("_BoundHandler", (_Handler,), {"fake": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, name="FakeDashScope", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None:
            return
        self._stop_event.set()  # releases "hang" handlers
        httpd.shutdown()
        httpd.server_close()
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:  # idle keep-alive connections would otherwise linger
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = None
        self._thread = None

    def __enter__(self) -> "FakeDashScope":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ test helpers
    @property
    def requests(self) -> List[RequestRecord]:
        """Snapshot of the request log (thread-safe copy)."""
        with self._lock:
            return list(self._requests)

    def count(self, method: str, path_prefix: str = "", status: Any = "any") -> int:
        """Number of logged requests matching method/path prefix (and status if given)."""
        method = method.upper()
        path_prefix = _relative(path_prefix)
        return sum(
            1
            for r in self.requests
            if r.method == method and r.path.startswith(path_prefix) and (status == "any" or r.status == status)
        )

    def inject(
        self,
        method: str,
        path_prefix: str,
        kind: Union[str, int],
        times: int = 1,
        *,
        seconds: float = 30.0,
        code: Optional[str] = None,
        message: Optional[str] = None,
    ) -> None:
        """Make the next ``times`` requests matching ``method`` and ``path_prefix`` misbehave.

        ``path_prefix`` is relative to the API root (``"/batches"``; a full
        ``/compatible-mode/v1/...`` path is accepted too) and matched with
        ``startswith``; ``method`` may be ``"*"``.  Faults apply after the
        auth check, in the order they were injected.  ``kind``:

        * ``"429"``: 429 with ``Retry-After: 0``/``Retry-After-Ms`` and a
          throttling error body; nothing is done.
        * any other 3-digit status, e.g. ``"500"``/``"503"``: that status with an
          error body (plus retry headers); nothing is done.
        * ``"drop_after_commit"``: perform the action, then close the socket
          without a response (answer lost after the server acted).
        * ``"drop_before_commit"``: close the socket without acting.
        * ``"hang"``: send nothing and wait (on an Event that :meth:`stop` sets)
          up to ``seconds``, then close the socket; nothing is done.
        * ``"hang_after_commit"``: like hang, but the action is performed first.
        """
        kind = str(kind)
        if kind not in FAULT_KINDS and not re.fullmatch(r"[45]\d\d", kind):
            raise ValueError(f"unknown fault kind {kind!r}")
        if times < 1:
            raise ValueError("times must be >= 1")
        with self._lock:
            self._faults.append(
                _Fault(method.upper(), _relative(path_prefix), kind, times, seconds, code, message)
            )

    @property
    def pending_faults(self) -> List[Tuple[str, str, str, int]]:
        """Injected faults not yet consumed: (method, path_prefix, kind, remaining)."""
        with self._lock:
            return [(f.method, f.prefix, f.kind, f.remaining) for f in self._faults if f.remaining > 0]

    def set_status(self, batch_id: str, status: str) -> Dict[str, Any]:
        """Force a batch into ``status`` (sets the matching ``*_at`` timestamp).

        ``expired``/``cancelled`` also write the partial output/error files the
        way a cancellation does; other statuses only change the fields.
        """
        if status not in ALL_STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._lock:
            batch = self.batches[batch_id]
            run = self._runs[batch_id]
            if batch["status"] == "validating" and status not in ("validating", "failed", "cancelling"):
                # Skipping validation: load the lines so counts and files make sense.
                lines, errors = _validate_input(self.files[batch["input_file_id"]]["bytes"], batch["endpoint"])
                if errors:
                    raise ValueError(f"input file of {batch_id} does not validate: {errors[:3]}")
                run.lines = lines
                batch["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}
                if batch["in_progress_at"] is None:
                    batch["in_progress_at"] = self._now()
            if status in ("expired", "cancelled"):
                self._finish_early(batch, run, status)
            else:
                batch["status"] = status
                ts_key = _STATUS_TS.get(status)
                if ts_key and batch[ts_key] is None:
                    batch[ts_key] = self._now()
                if status == "completed":
                    self._process_until(batch, run, len(run.lines))
                    self._complete(batch, run)
            return copy.deepcopy(batch)

    def set_steps(self, batch_id: str, steps: int) -> None:
        """Change the number of in_progress steps of one batch."""
        with self._lock:
            self._runs[batch_id].steps = steps

    def force_validation_failure(
        self,
        batch_id: str,
        code: str = "url_not_found",
        message: Optional[str] = None,
        *,
        line: Optional[int] = 1,
        param: Optional[str] = "url",
    ) -> None:
        """Make the batch fail validation on its next retrieve with this error."""
        if message is None:
            message = f"Forced validation failure ({code})."
        with self._lock:
            if self.batches[batch_id]["status"] != "validating":
                raise ValueError("batch is no longer validating")
            self._forced_validation[batch_id] = [_line_error(code, message, param, line)]

    def file_lines(self, file_id: str) -> List[Dict[str, Any]]:
        """Parsed JSONL lines of a stored file (convenience for assertions)."""
        with self._lock:
            data = self.files[file_id]["bytes"]
        return [json.loads(x) for x in data.decode("utf-8").splitlines() if x.strip()]

    # ------------------------------------------------------------------ internals
    def _now(self) -> int:
        return int(self.clock())

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _hex24(self) -> str:
        return "%024x" % self._rng.getrandbits(96)

    def _log(self, method: str, path: str, status: Optional[int]) -> None:
        with self._lock:
            self._requests.append(RequestRecord(method, path, status))

    def _take_fault(self, method: str, path: str) -> Optional[_Fault]:
        with self._lock:
            for f in self._faults:
                if f.remaining > 0 and f.method in ("*", method) and path.startswith(f.prefix):
                    f.remaining -= 1
                    return f
        return None

    def _check_auth(self, header: Optional[str]) -> bool:
        if not header:
            return False
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(token.strip().encode("utf-8"), self.api_key.encode("utf-8"))

    # ---- JSON helpers
    def _json(self, status: int, obj: Any, headers=None) -> _Response:
        return _Response(status, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json", headers)

    def _error(self, status: int, message: str, code: str, type_: str = "invalid_request_error", param=None, headers=None) -> _Response:
        # OpenAI-style error body as DashScope compatible-mode returns it; the
        # top-level request_id mirrors DashScope.  Never echoes credentials.
        body = {
            "error": {"message": message, "type": type_, "param": param, "code": code},
            "request_id": self._uuid(),
        }
        return self._json(status, body, headers)

    def _fault_response(self, fault: _Fault) -> _Response:
        status = int(fault.kind)
        headers = {"Retry-After": "0", "Retry-After-Ms": str(self.retry_after_ms)}
        if status == 429:
            # DashScope-like throttling code.  ASSUMED: the compatible-mode
            # endpoint may instead say e.g. "limit_requests"; clients should key
            # on the HTTP status, not on this string.
            code = fault.code or "Throttling.RateQuota"
            message = fault.message or "Requests rate limit exceeded, please try again later."
            type_ = "limit_requests"
        elif status >= 500:
            code = fault.code or "internal_error"
            message = fault.message or "An internal error has occurred, please try again later."
            type_ = "internal_error"
        else:
            code = fault.code or "invalid_request_error"
            message = fault.message or "Injected error."
            type_ = "invalid_request_error"
        return self._error(status, message, code, type_, headers=headers)

    # ---- routing
    def _route(self, method: str, path: str, query: Dict[str, List[str]], headers, body: bytes) -> _Response:
        parts = [p for p in path.split("/") if p]
        try:
            with self._lock:
                if parts == ["files"]:
                    if method == "POST":
                        return self._create_file(headers.get("Content-Type", ""), body)
                    if method == "GET":
                        return self._list_files(query)
                elif len(parts) == 2 and parts[0] == "files":
                    if method == "GET":
                        return self._json(200, self._file_object(self._get_file(parts[1])))
                    if method == "DELETE":
                        self._get_file(parts[1])
                        del self.files[parts[1]]
                        return self._json(200, {"object": "file", "deleted": True, "id": parts[1]})
                elif len(parts) == 3 and parts[0] == "files" and parts[2] == "content":
                    if method == "GET":
                        f = self._get_file(parts[1])
                        return _Response(200, f["bytes"], "application/octet-stream")
                elif parts == ["batches"]:
                    if method == "POST":
                        return self._create_batch(body)
                    if method == "GET":
                        return self._list_batches(query)
                elif len(parts) == 2 and parts[0] == "batches":
                    if method == "GET":
                        batch, run = self._get_batch(parts[1])
                        self._advance(batch, run)
                        return self._json(200, batch)
                elif len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel":
                    if method == "POST":
                        return self._cancel_batch(parts[1])
                return self._error(404, f"Unknown route: {method} {path}", "not_found", "invalid_request_error")
        except _ClientError as e:
            return self._error(e.status, e.message, e.code, e.type, e.param)

    # ---- files
    def _get_file(self, file_id: str) -> Dict[str, Any]:
        f = self.files.get(file_id)
        if f is None:
            raise _ClientError(404, f"File not found: {file_id}", "not_found", param="file_id")
        return f

    @staticmethod
    def _file_object(f: Dict[str, Any]) -> Dict[str, Any]:
        # Key order as recorded from the real GET /files/{id} response.
        return {
            "id": f["id"],
            "object": "file",
            "bytes": len(f["bytes"]),
            "filename": f["filename"],
            "purpose": f["purpose"],
            "status": "processed",
            "created_at": f["created_at"],
        }

    def _store_file(self, prefix: str, data: bytes, filename: str, purpose: str) -> str:
        file_id = f"{prefix}{self._hex24()}"
        self.files[file_id] = {
            "id": file_id,
            "bytes": data,
            "purpose": purpose,
            "filename": filename,
            "created_at": self._now(),
        }
        return file_id

    def _create_file(self, content_type: str, body: bytes) -> _Response:
        fields = _parse_multipart(content_type, body)
        purpose_field = fields.get("purpose")
        file_field = fields.get("file")
        if file_field is None or file_field[0] is None:
            raise _ClientError(400, "Missing required multipart field 'file'.", "invalid_parameter_error", param="file")
        purpose = (purpose_field[1] if purpose_field else b"").decode("utf-8", "replace")
        if purpose != "batch":
            # The real service also knows e.g. "file-extract"; this fake only does batch.
            raise _ClientError(
                400, f"Invalid purpose '{purpose}': only 'batch' is supported here.", "invalid_parameter_error", param="purpose"
            )
        filename, data = file_field
        file_id = self._store_file("file-batch-", data, filename, "batch")
        return self._json(200, self._file_object(self.files[file_id]))

    def _list_files(self, query) -> _Response:
        data = [self._file_object(f) for f in reversed(list(self.files.values()))]
        return self._json(200, {"object": "list", "data": data, "has_more": False})

    # ---- batches
    def _get_batch(self, batch_id: str) -> Tuple[Dict[str, Any], _Run]:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise _ClientError(404, f"Batch not found: {batch_id}", "not_found", param="batch_id")
        return batch, self._runs[batch_id]

    def _create_batch(self, body: bytes) -> _Response:
        try:
            req = json.loads(body.decode("utf-8") or "null")
        except (UnicodeDecodeError, ValueError):
            raise _ClientError(400, "Request body is not valid JSON.", "invalid_parameter_error")
        if not isinstance(req, dict):
            raise _ClientError(400, "Request body must be a JSON object.", "invalid_parameter_error")
        for key in ("input_file_id", "endpoint", "completion_window"):
            if not req.get(key):
                raise _ClientError(400, f"Missing required parameter '{key}'.", "invalid_parameter_error", param=key)
        input_file_id = req["input_file_id"]
        endpoint = req["endpoint"]
        window = req["completion_window"]
        metadata = req.get("metadata")
        # ASSUMED: an unknown input file is a 400 (the real status code is not recorded).
        if input_file_id not in self.files:
            raise _ClientError(
                400, f"The input file '{input_file_id}' does not exist.", "invalid_parameter_error", param="input_file_id"
            )
        # ASSUMED: an unsupported endpoint is rejected at create time with 400.
        if endpoint not in ALLOWED_URLS:
            raise _ClientError(
                400, f"The provided endpoint '{endpoint}' is not supported by the Batch API.", "invalid_parameter_error",
                param="endpoint",
            )
        m = _COMPLETION_WINDOW_RE.match(str(window))
        hours = None
        if m:
            hours = int(m.group(1)) * (24 if m.group(2) == "d" else 1)
        if hours is None or not 24 <= hours <= 336:
            raise _ClientError(
                400,
                f"Invalid completion_window '{window}': must be 24h to 336h, written with unit h or d (e.g. '24h', '14d').",
                "invalid_parameter_error",
                param="completion_window",
            )
        if metadata is not None:
            if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
                raise _ClientError(400, "metadata must be an object of strings.", "invalid_parameter_error", param="metadata")
            for key, limit in (("ds_name", 100), ("ds_description", 200)):
                if len(metadata.get(key, "")) > limit:
                    raise _ClientError(
                        400, f"metadata.{key} must be at most {limit} characters.", "invalid_parameter_error",
                        param=f"metadata.{key}",
                    )
        batch_id = f"batch_{self._uuid()}"
        # Key order and null fields exactly as the recorded create response.
        # expires_at is null in every recorded object, even with a 24h window.
        batch = {
            "id": batch_id,
            "object": "batch",
            "endpoint": endpoint,
            "errors": None,
            "input_file_id": input_file_id,
            "completion_window": window,
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": self._now(),
            "in_progress_at": None,
            "expires_at": None,
            "finalizing_at": None,
            "completed_at": None,
            "failed_at": None,
            "expired_at": None,
            "cancelling_at": None,
            "cancelled_at": None,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": metadata,
        }
        self.batches[batch_id] = batch
        self._runs[batch_id] = _Run(self.steps)
        self._runs[batch_id].number = len(self.batches)
        self._runs[batch_id].last_step = self.clock()
        return self._json(200, batch)

    def _list_batches(self, query) -> _Response:
        def q(name):
            v = query.get(name)
            return v[0] if v else None

        limit_s = q("limit")
        try:
            limit = 20 if limit_s is None else int(limit_s)
        except ValueError:
            limit = -1
        if not 1 <= limit <= 100:
            raise _ClientError(400, "limit must be an integer between 1 and 100.", "invalid_parameter_error", param="limit")
        items = list(reversed(list(self.batches.values())))  # newest first
        after = q("after")
        if after is not None:
            ids = [b["id"] for b in items]
            # ASSUMED: an unknown cursor yields an empty page (not an error).
            items = items[ids.index(after) + 1:] if after in ids else []
        status = q("status")
        if status:
            items = [b for b in items if b["status"] == status]
        ds_name = q("ds_name")
        if ds_name:  # ASSUMED: substring match
            items = [b for b in items if ds_name in ((b.get("metadata") or {}).get("ds_name") or "")]
        input_file_ids = q("input_file_ids")
        if input_file_ids:  # ASSUMED: comma-separated list
            wanted = set(input_file_ids.split(","))
            items = [b for b in items if b["input_file_id"] in wanted]
        # create_after / create_before (yyyyMMddHHmmss, timezone undocumented) are ignored.
        page = items[:limit]
        has_more = len(items) > limit
        data: Any = copy.deepcopy(page)
        if not page and self.empty_list_data_null:
            data = None  # recorded: the real service returns "data": null for an empty list
        return self._json(
            200,
            {
                "object": "list",
                "data": data,
                "first_id": page[0]["id"] if page else None,
                "last_id": page[-1]["id"] if page else None,
                "has_more": has_more,
            },
        )

    def _cancel_batch(self, batch_id: str) -> _Response:
        batch, run = self._get_batch(batch_id)
        status = batch["status"]
        if status in ("validating", "in_progress", "finalizing"):
            batch["status"] = "cancelling"
            # Recorded: the cancel response says "cancelling" but cancelling_at is
            # still null; the later cancelled object has cancelling_at == cancelled_at.
        elif status != "cancelling":
            # ASSUMED status code and code for cancelling a finished batch.
            raise _ClientError(
                400, f"Cannot cancel a batch with status '{status}'.", "invalid_parameter_error", param="batch_id"
            )
        return self._json(200, batch)

    # ---- lifecycle
    def _advance(self, batch: Dict[str, Any], run: _Run) -> None:
        status = batch["status"]
        if self.step_seconds is not None and status not in TERMINAL_STATUSES:
            if self.clock() - run.last_step < self.step_seconds:
                return
            run.last_step = self.clock()
        if self.instant and status in ("validating", "in_progress", "finalizing"):
            if status == "validating":
                self._validate(batch, run)
            if batch["status"] != "failed":
                self._process_until(batch, run, len(run.lines))
                self._complete(batch, run)
            return
        if status == "in_progress" and run.number in self.expire_batches:
            self._process_until(batch, run, math.floor(len(run.lines) * self.expire_batches[run.number]))
            self._finish_early(batch, run, "expired")
            return
        if status == "validating":
            self._validate(batch, run)
        elif status == "in_progress":
            if run.progress_step < run.steps:
                run.progress_step += 1
                n = len(run.lines)
                self._process_until(batch, run, math.ceil(n * run.progress_step / run.steps))
            else:
                self._process_until(batch, run, len(run.lines))
                batch["status"] = "finalizing"
                batch["finalizing_at"] = self._now()
        elif status == "finalizing":
            self._process_until(batch, run, len(run.lines))
            self._complete(batch, run)
        elif status == "cancelling":
            self._finish_early(batch, run, "cancelled")

    def _validate(self, batch: Dict[str, Any], run: _Run) -> None:
        errors = self._forced_validation.pop(batch["id"], None)
        lines: List[Dict[str, Any]] = []
        if errors is None:
            data = self.files[batch["input_file_id"]]["bytes"]
            lines, errors = _validate_input(data, batch["endpoint"])
        if errors:
            batch["status"] = "failed"
            batch["failed_at"] = self._now()
            # Recorded: failed validation keeps request_counts at 0 and writes
            # no error file; the errors are in the batch object.
            batch["errors"] = {"object": "list", "data": errors}
            return
        run.lines = lines
        batch["status"] = "in_progress"
        batch["in_progress_at"] = self._now()
        batch["request_counts"] = {"total": len(lines), "completed": 0, "failed": 0}

    def _process_until(self, batch: Dict[str, Any], run: _Run, upto: int) -> None:
        while run.processed < min(upto, len(run.lines)):
            line = run.lines[run.processed]
            run.processed += 1
            ok, text = self._execute(line)
            (run.ok_lines if ok else run.err_lines).append(text)
        counts = batch["request_counts"]
        counts["completed"] = len(run.ok_lines)
        counts["failed"] = len(run.err_lines)

    def _failure_for(self, custom_id: str) -> Optional[Dict[str, Any]]:
        fails = self.fail_custom_ids
        if custom_id not in fails:
            return None
        spec = dict(fails[custom_id]) if isinstance(fails, Mapping) else {}
        times = spec.pop("times", None)
        if times is not None:
            self._line_runs[custom_id] += 1
            if self._line_runs[custom_id] > times:
                return None
        spec.setdefault("status_code", 400)
        spec.setdefault("code", "InvalidParameter")
        spec.setdefault("message", f"Injected failure for custom_id {custom_id}.")
        return spec

    def _execute(self, line: Dict[str, Any]) -> Tuple[bool, str]:
        custom_id = line["custom_id"]
        body = line["body"]
        url = line["url"]
        model = body.get("model")
        req_id = self._uuid()
        failure = self._failure_for(custom_id)
        if failure is not None:
            # UNCONFIRMED: the exact shape of an error-file line is not recorded.
            # This mirrors an output line with a non-2xx response and a non-null
            # "error" {code, message}; the docs' own helper reads
            # error_code / error_message instead, so clients should accept both.
            out = {
                "id": req_id,
                "custom_id": custom_id,
                "response": {
                    "status_code": failure["status_code"],
                    "request_id": req_id,
                    "body": {
                        "error": {
                            "message": failure["message"],
                            "type": "invalid_request_error",
                            "param": None,
                            "code": failure["code"],
                        },
                        "id": f"chatcmpl-{req_id}",
                        "request_id": req_id,
                    },
                },
                "error": {"code": failure["code"], "message": failure["message"]},
            }
            return False, _dumps(out)

        created = self._now()
        if url == EMBEDDINGS_URL:
            inputs = body.get("input")
            if not isinstance(inputs, list):
                inputs = [inputs]
            dims = body.get("dimensions") or 8  # small stand-in vector size (real default is larger)
            data = []
            for i, item in enumerate(inputs):
                r = random.Random(zlib.crc32(json.dumps([custom_id, i, item]).encode("utf-8")))
                data.append({"embedding": [round(r.uniform(-1, 1), 6) for _ in range(int(dims))], "index": i, "object": "embedding"})
            pt = int(self.prompt_tokens_fn(body))
            resp_body = {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": pt, "total_tokens": pt},
                "id": req_id,
            }
        else:
            if model == TEST_MODEL:
                # Documented: the test model always answers this with fixed usage.
                content, pt, ct = "This is a test result.", 20, 6
                finish = "stop"
            else:
                pt = int(self.prompt_tokens_fn(body))
                ct = int(self.completion_tokens_fn(custom_id, body))
                content = f"Fake reply to {custom_id} ({ct} tokens)."
                max_tokens = body.get("max_tokens")
                finish = "length" if max_tokens is not None and ct >= int(max_tokens) else "stop"
            # Key order exactly as the recorded real output line.
            resp_body = {
                "created": created,
                "usage": {"completion_tokens": ct, "prompt_tokens": pt, "total_tokens": pt + ct},
                "model": model,
                "id": f"chatcmpl-{req_id}",
                "choices": [
                    {"finish_reason": finish, "index": 0, "message": {"role": "assistant", "content": content}}
                ],
                "object": "chat.completion",
            }
        out = {
            "id": req_id,
            "custom_id": custom_id,
            "response": {"status_code": 200, "request_id": req_id, "body": resp_body},
            "error": None,
        }
        return True, _dumps(out)

    def _shuffled(self, batch_id: str, which: str, lines: List[str]) -> List[str]:
        """Seeded shuffle; never returns input order for >1 line (real output order is not input order)."""
        out = list(lines)
        random.Random(f"{self.seed}:{batch_id}:{which}").shuffle(out)
        if len(out) > 1 and out == lines:
            out = out[1:] + out[:1]
        return out

    def _write_jsonl(self, prefix: str, batch_id: str, which: str, lines: List[str]) -> str:
        data = "".join(l + "\n" for l in self._shuffled(batch_id, which, lines)).encode("utf-8")
        return self._store_file(prefix, data, f"{batch_id}_{which}.jsonl", "batch_output")

    def _complete(self, batch: Dict[str, Any], run: _Run) -> None:
        batch_id = batch["id"]
        # Recorded: output_file_id exists only at the end; error_file_id is
        # null when nothing failed.  ASSUMED: output_file_id is null when no
        # line succeeded (as in the recorded cancelled batch).
        if run.ok_lines:
            batch["output_file_id"] = self._write_jsonl("file-batch_output-", batch_id, "output", run.ok_lines)
        if run.err_lines:
            batch["error_file_id"] = self._write_jsonl("file-batch_error-", batch_id, "error", run.err_lines)
        now = self._now()
        if batch["finalizing_at"] is None:
            batch["finalizing_at"] = now
        batch["status"] = "completed"
        batch["completed_at"] = now

    def _finish_early(self, batch: Dict[str, Any], run: _Run, status: str) -> None:
        """cancelled / expired: finished requests stay in the output file, the rest go to an error file."""
        batch_id = batch["id"]
        code = "batch_cancelled" if status == "cancelled" else "batch_expired"  # ASSUMED codes
        unprocessed = []
        for line in run.lines[run.processed:]:
            req_id = self._uuid()
            # UNCONFIRMED shape for a request that never ran.
            unprocessed.append(
                _dumps(
                    {
                        "id": req_id,
                        "custom_id": line["custom_id"],
                        "response": None,
                        "error": {"code": code, "message": f"The batch was {status} before this request was processed."},
                    }
                )
            )
        err_lines = run.err_lines + unprocessed
        if run.ok_lines:
            batch["output_file_id"] = self._write_jsonl("file-batch_output-", batch_id, "output", run.ok_lines)
        if err_lines:
            # Recorded quirk: the real cancelled batch's error_file_id starts with
            # "file-batch_output-", not "file-batch_error-".  Mimicked for
            # cancellation; clients must not infer a file's role from its id.
            prefix = "file-batch_output-" if status == "cancelled" else "file-batch_error-"
            batch["error_file_id"] = self._write_jsonl(prefix, batch_id, "error", err_lines)
        total = len(run.lines)
        batch["request_counts"] = {"total": total, "completed": len(run.ok_lines), "failed": total - len(run.ok_lines)}
        now = self._now()
        batch["status"] = status
        batch[_STATUS_TS[status]] = now
        if status == "cancelled":
            batch["cancelling_at"] = now  # recorded: cancelling_at == cancelled_at


# ---------------------------------------------------------------------- validation
def _line_error(code: str, message: str, param: Optional[str], line: Optional[int]) -> Dict[str, Any]:
    # Key order as recorded: code, message, param, line (1-based).
    return {"code": code, "message": message, "param": param, "line": line}


def _validate_input(data: bytes, endpoint: str) -> Tuple[List[Dict[str, Any]], List[Dict[str, Any]]]:
    """Return (valid lines, errors).  All errors are collected (ASSUMED: the real
    service may stop at the first).  Only url_not_found and mismatched_test_url
    are codes seen from the real service; every other code name is ASSUMED."""
    errors: List[Dict[str, Any]] = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return [], [_line_error("invalid_file_encoding", "The input file is not valid UTF-8.", None, None)]  # ASSUMED code
    raw_lines = text.split("\n")
    if raw_lines and raw_lines[-1] == "":
        raw_lines.pop()
    lines: List[Dict[str, Any]] = []
    seen_ids: Dict[str, int] = {}
    first_model: Optional[str] = None
    first_thinking: Any = None
    is_test = False
    for n, raw in enumerate(raw_lines, 1):
        raw = raw.rstrip("\r")
        if not raw.strip():
            continue  # ASSUMED: blank lines are skipped
        if len(raw.encode("utf-8")) > MAX_LINE_BYTES:
            errors.append(_line_error("line_too_large", "A line exceeds the 6 MB limit.", None, n))  # ASSUMED code
            continue
        try:
            obj = json.loads(raw)
        except ValueError:
            errors.append(_line_error("invalid_json_line", "This line is not parseable as valid JSON.", None, n))  # ASSUMED
            continue
        if not isinstance(obj, dict):
            errors.append(_line_error("invalid_json_line", "This line is not a JSON object.", None, n))  # ASSUMED
            continue
        missing = [k for k in ("custom_id", "method", "url", "body") if k not in obj]
        if missing:
            errors.append(
                _line_error("missing_required_parameter", f"Missing required parameter: '{missing[0]}'.", missing[0], n)
            )  # ASSUMED code
            continue
        custom_id, method, url, body = obj["custom_id"], obj["method"], obj["url"], obj["body"]
        if not isinstance(custom_id, str) or not custom_id:
            errors.append(_line_error("invalid_custom_id", "custom_id must be a non-empty string.", "custom_id", n))  # ASSUMED
            continue
        if method != "POST":
            errors.append(_line_error("invalid_method", f"The provided method '{method}' is not supported.", "method", n))  # ASSUMED
            continue
        if url not in ALLOWED_URLS:
            # Recorded from the real service (code, message, param, line).
            errors.append(
                _line_error("url_not_found", f"The provided url '{url}' is not supported by the Batch API.", "url", n)
            )
            continue
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            errors.append(_line_error("missing_required_parameter", "body.model is required.", "body.model", n))  # ASSUMED
            continue
        model = body["model"]
        if (model == TEST_MODEL) != (url == TEST_URL):
            # Documented code for the test model on a non-test url; ASSUMED the
            # same code for a normal model sent to the test url.
            errors.append(
                _line_error(
                    "mismatched_test_url",
                    f"The model '{model}' cannot be used with the url '{url}'; "
                    f"'{TEST_MODEL}' must be sent to '{TEST_URL}' and only there.",
                    "url",
                    n,
                )
            )
            continue
        if url != endpoint:
            errors.append(
                _line_error(
                    "mismatched_endpoint",  # ASSUMED code
                    f"The url '{url}' does not match the batch endpoint '{endpoint}'.",
                    "url",
                    n,
                )
            )
            continue
        if custom_id in seen_ids:
            errors.append(
                _line_error(
                    "duplicate_custom_id",  # ASSUMED code (uniqueness itself is documented)
                    f"The custom_id '{custom_id}' is duplicated (first seen on line {seen_ids[custom_id]}).",
                    "custom_id",
                    n,
                )
            )
            continue
        seen_ids[custom_id] = n
        thinking = body.get("enable_thinking")
        if first_model is None:
            first_model, first_thinking = model, thinking
        elif model != first_model:
            errors.append(
                _line_error(
                    "mismatched_model",  # ASSUMED code (one model per file is documented)
                    f"All requests in a file must use the same model; expected '{first_model}', got '{model}'.",
                    "body.model",
                    n,
                )
            )
            continue
        elif thinking != first_thinking:
            errors.append(
                _line_error(
                    "mismatched_thinking_mode",  # ASSUMED code (one thinking mode per file is documented)
                    "All requests in a file must use the same thinking mode (enable_thinking).",
                    "body.enable_thinking",
                    n,
                )
            )
            continue
        is_test = is_test or model == TEST_MODEL
        lines.append({"custom_id": custom_id, "method": method, "url": url, "body": body, "line": n})
    if not errors:
        if not lines:
            errors.append(_line_error("empty_file", "The input file contains no requests.", None, None))  # ASSUMED
        elif len(lines) > MAX_LINES:
            errors.append(_line_error("too_many_tasks", f"At most {MAX_LINES} requests per file.", None, None))  # ASSUMED
        elif is_test and (len(lines) > MAX_TEST_LINES or len(data) > MAX_TEST_FILE_BYTES):
            errors.append(
                _line_error("too_many_tasks", "batch-test-model files hold at most 100 lines and 1 MB.", None, None)
            )  # ASSUMED code
    return (lines if not errors else []), errors


# ---------------------------------------------------------------------- HTTP plumbing
def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _relative(path: str) -> str:
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX):]
    if path and not path.startswith("/"):
        path = "/" + path
    return path


def _parse_multipart(content_type: str, body: bytes) -> Dict[str, Tuple[Optional[str], bytes]]:
    """Parse multipart/form-data with the stdlib email parser: name -> (filename, bytes)."""
    if not content_type.lower().startswith("multipart/form-data"):
        raise _ClientError(400, "Expected a multipart/form-data body.", "invalid_parameter_error")
    raw = b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(raw)
    if not msg.is_multipart():
        raise _ClientError(400, "Malformed multipart body.", "invalid_parameter_error")
    fields: Dict[str, Tuple[Optional[str], bytes]] = {}
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not name:
            continue
        filename = part.get_filename()
        if filename is not None:
            try:
                filename = filename.encode("utf-8", "surrogateescape").decode("utf-8")
            except UnicodeError:
                pass
        payload = part.get_payload(decode=True)
        fields[str(name)] = (filename, payload if payload is not None else b"")
    return fields


class _Handler(BaseHTTPRequestHandler):
    fake: FakeDashScope  # set on the per-server subclass
    protocol_version = "HTTP/1.1"
    server_version = "FakeDashScope/1.0"

    def setup(self) -> None:
        super().setup()
        try:  # one write per response + no Nagle: avoids 40 ms delayed-ACK stalls per request
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        with self.fake._conns_lock:
            self.fake._conns.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            with self.fake._conns_lock:
                self.fake._conns.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        # Silent: use FakeDashScope.requests.  (Nothing here could leak the key
        # anyway: only the request line is logged by the base class.)
        pass

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks = []
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _drop(self) -> None:
        """Close the connection without sending a single byte."""
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, resp: _Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        self.send_header("x-request-id", str(uuid.uuid4()))
        for k, v in resp.headers.items():
            self.send_header(k, v)
        # Same as end_headers() + wfile.write(body), but in a single send.
        self._headers_buffer.append(b"\r\n")
        self._headers_buffer.append(resp.body)
        self.flush_headers()

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        split = urlsplit(self.path)
        body = self._read_body()
        if not split.path.startswith(API_PREFIX + "/") and split.path != API_PREFIX:
            path = split.path
            resp = fake._error(404, f"Unknown route: {method} {path}", "not_found")
            fake._log(method, path, resp.status)
            self._send(resp)
            return
        path = split.path[len(API_PREFIX):] or "/"
        if not fake._check_auth(self.headers.get("Authorization")):
            resp = fake._error(
                401,
                "Incorrect API key provided.",  # never echo the presented or expected key
                "invalid_api_key",
                "invalid_request_error",
            )
            fake._log(method, path, 401)
            self._send(resp)
            return

        fault = fake._take_fault(method, path)
        if fault is not None:
            if fault.kind == "drop_before_commit":
                fake._log(method, path, None)
                self._drop()
                return
            if fault.kind == "hang":
                fake._log(method, path, None)  # logged when the hang starts
                fake._stop_event.wait(fault.seconds)
                self._drop()
                return
            if fault.kind not in ("drop_after_commit", "hang_after_commit"):
                resp = fake._fault_response(fault)
                fake._log(method, path, resp.status)
                self._send(resp)
                return

        chat = getattr(fake, "chat", None)  # real-time chat completions: tests/fakes/chat_completions.py
        if chat is not None and method == "POST" and path == "/chat/completions":
            fake._log(method, path, chat.serve(self, body))
            return
        query = parse_qs(split.query, keep_blank_values=True)
        resp = fake._route(method, path, query, self.headers, body)

        if fault is not None:  # *_after_commit: the action above has happened
            fake._log(method, path, None)
            if fault.kind == "hang_after_commit":
                fake._stop_event.wait(fault.seconds)
            self._drop()
            return
        fake._log(method, path, resp.status)
        self._send(resp)


# ---------------------------------------------------------------------- pytest helper
def fake_dashscope_fixture(**kwargs: Any):
    """Build a pytest fixture yielding a started FakeDashScope, e.g. in a test module::

        fake_dashscope = fake_dashscope_fixture(steps=1)
    """
    import pytest

    @pytest.fixture
    def _fixture():
        with FakeDashScope(**kwargs) as server:
            yield server

    return _fixture
