"""The DashScope Batch API, through the ``openai`` SDK (facts §1).

This is the only module that imports ``openai``, and it does so inside
functions: the CLI starts without paying for it.

Every failure surfaces as ``BatchAPIError``: one line, built here from the
HTTP status and the service's error code and message, with the API key
scrubbed out. The SDK's own exception text is never shown, because it can
carry request details.

Creating a batch is the one call that must not be repeated blindly: the SDK
retries a dropped connection, and a create whose answer was lost has often
been done already (tests/test_dashscope_server.py proves the duplicate).
``create_batch`` therefore sends the create without SDK retries and, when the
answer is lost, looks for a batch on the uploaded file before it tries again.
``submit`` ties that to the ledger, so a crash at any step is recovered by
running the same submit again.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from typing import IO, Any, Callable, Mapping
from urllib.parse import urlsplit

from .catalog import DEFAULT_REGION, default_catalog

API_KEY_ENV = "DASHSCOPE_API_KEY"
BASE_URL_ENV = "DASHSCOPE_BASE_URL"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
# Documented completion windows: 24h to 336h, written in h or d [BATCH].
MIN_WINDOW_HOURS, MAX_WINDOW_HOURS = 24, 336
_WINDOW = re.compile(r"^\s*(\d+)\s*([hd])\s*$", re.IGNORECASE)
# Documented metadata limits [BATCH].
MAX_NAME_CHARS, MAX_DESCRIPTION_CHARS = 100, 200
# A lookup scans batches created since the submission began, less this margin
# for clock skew between this machine and the service.
LOOKUP_MARGIN_SECONDS = 3600
LOOKUP_MAX_PAGES = 10
MAX_RETRY_DELAY = 60.0


class BatchAPIError(Exception):
    """A call that failed, as one line without the key.

    ``lost``: no answer came back (connection dropped, timeout), so the
    service may or may not have acted. ``retryable``: the service answered
    that it could not act now (429, 408, 409, 5xx).
    """

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 param: str | None = None, lost: bool = False, retryable: bool = False,
                 retry_after: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param
        self.lost = lost
        self.retryable = retryable
        self.retry_after = retry_after

    @property
    def definite(self) -> bool:
        """The service answered and did nothing: safe to start over."""
        return not self.lost and not self.retryable


class MissingKey(BatchAPIError):
    pass


@dataclass(frozen=True)
class Connection:
    base_url: str
    api_key: str | None  # None only when not required (a dry run)

    def __iter__(self):  # unpacks as (base_url, api_key)
        return iter((self.base_url, self.api_key))

    def __repr__(self) -> str:  # never show the key
        return f"Connection(base_url={self.base_url!r}, api_key={'***' if self.api_key else None})"


def region_base_url(region: str) -> str:
    """The documented base URL of a region (catalog ``regions``)."""
    regions = default_catalog().regions
    if region not in regions:
        raise ValueError(f"unknown region {region!r} (expected one of {', '.join(regions)})")
    return regions[region].base_url


def resolve_connection(region: str | None = None, base_url: str | None = None,
                       env: Mapping[str, str] | None = None, *, fallback_base_url: str | None = None,
                       require_key: bool = True) -> Connection:
    """Where to send calls and with which key.

    The base URL is ``base_url``, else ``$DASHSCOPE_BASE_URL``, else the
    region's documented URL; with no region given, ``fallback_base_url`` (a
    ledger entry's), else the default region's. The key comes only from
    ``$DASHSCOPE_API_KEY``.
    """
    env = os.environ if env is None else env
    url = base_url or env.get(BASE_URL_ENV) or None
    if url is None:
        if region is None and fallback_base_url:
            url = fallback_base_url
        else:
            url = region_base_url(region or DEFAULT_REGION)
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BatchAPIError(f"base URL {_safe_url(url)!r} is not an http(s) URL")
    key = (env.get(API_KEY_ENV) or "").strip() or None
    if key is None and require_key:
        raise MissingKey(
            f"{API_KEY_ENV} is not set: export the DashScope API key of the region you call "
            f"({_safe_url(url)}); keys differ between intl and cn"
        )
    if key is not None and not (key.isascii() and key.isprintable()):
        # An HTTP header cannot carry it; say so without showing it.
        raise MissingKey(f"{API_KEY_ENV} holds characters an API key cannot have (it is not printable ASCII)")
    return Connection(url, key)


def is_plain_http_remote(base_url: str) -> bool:
    """True when the key would cross the network unencrypted."""
    parts = urlsplit(base_url)
    return parts.scheme == "http" and (parts.hostname or "") not in ("127.0.0.1", "localhost", "::1")


def parse_window(text: str) -> str:
    """A completion window as the service takes it: '24h'..'336h' or '1d'..'14d'."""
    number, unit, _ = _window(text)
    return f"{number}{unit}"


def window_hours(text: str) -> int:
    """The hours of a completion window written as ``parse_window`` takes it."""
    return _window(text)[2]


def _window(text: str) -> tuple[int, str, int]:
    m = _WINDOW.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a completion window; write hours or days, like 24h, 72h or 14d")
    number, unit = int(m.group(1)), m.group(2).lower()
    hours = number * (24 if unit == "d" else 1)
    if not MIN_WINDOW_HOURS <= hours <= MAX_WINDOW_HOURS:
        raise ValueError(f"{text!r} is outside the allowed {MIN_WINDOW_HOURS}h-{MAX_WINDOW_HOURS}h (1d-14d)")
    return number, unit, hours


def batch_metadata(name: str | None, description: str | None) -> dict[str, str] | None:
    """``metadata`` for batches.create, checked against the documented limits."""
    meta = {}
    if name:
        if len(name) > MAX_NAME_CHARS:
            raise ValueError(f"--name is {len(name)} characters; the service takes at most {MAX_NAME_CHARS}")
        meta["ds_name"] = name
    if description:
        if len(description) > MAX_DESCRIPTION_CHARS:
            raise ValueError(
                f"--description is {len(description)} characters; the service takes at most {MAX_DESCRIPTION_CHARS}")
        meta["ds_description"] = description
    return meta or None


def scrub(text: str, secret: str | None) -> str:
    """``text`` with the secret replaced, whatever produced it."""
    if secret and text:
        text = text.replace(secret, "***")
    return text


def _safe_url(url: str) -> str:
    """A URL without user info or query (either could hold a secret)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}" if parts.scheme else url


class BatchClient:
    """The Batch API calls batchplan makes, over ``openai.OpenAI``.

    Batches and pages are returned as the JSON the service sent (dicts), so
    fields the SDK's types do not know (``errors.data[].line``) survive.
    """

    def __init__(self, api_key: str, base_url: str, timeout: float = DEFAULT_TIMEOUT,
                 max_retries: int = DEFAULT_MAX_RETRIES):
        from openai import Omit, OpenAI

        self.base_url = base_url
        self.timeout = timeout
        self.max_retries = max_retries
        self._key = api_key
        # OpenAI-Organization/-Project would come from the user's OpenAI
        # environment; they mean nothing to DashScope, so they are not sent.
        self._client = OpenAI(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=max_retries,
            default_headers={"OpenAI-Organization": Omit(), "OpenAI-Project": Omit()},
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> "BatchClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BatchClient(base_url={self.base_url!r})"

    # -- calls -----------------------------------------------------------------
    def upload(self, path: str) -> str:
        """Upload a batch file (``purpose=batch``); its file id."""
        name = os.path.basename(path)
        with open(path, "rb") as handle:
            # A tuple names the part after the file, not after the full path.
            resp = self._call("upload", lambda: self._client.files.with_raw_response.create(
                file=(name, handle), purpose="batch"))
        return _json(resp)["id"]

    def create(self, input_file_id: str, endpoint: str, window: str,
               metadata: Mapping[str, str] | None = None) -> dict[str, Any]:
        """One ``batches.create``, never retried by the SDK (see ``create_batch``)."""
        extra = {"metadata": dict(metadata)} if metadata else {}
        raw = self._client.with_options(max_retries=0).batches.with_raw_response
        resp = self._call("create batch", lambda: raw.create(
            input_file_id=input_file_id, endpoint=endpoint, completion_window=window, **extra))
        return _json(resp)

    def retrieve(self, batch_id: str) -> dict[str, Any]:
        return _json(self._call(f"batch {batch_id}", lambda: self._client.batches.with_raw_response.retrieve(batch_id)))

    def list(self, limit: int = 20, after: str | None = None, **filters: str) -> dict[str, Any]:
        """One page: ``{"data": [...], "has_more", "first_id", "last_id"}``.
        ``filters`` are DashScope's list filters (``input_file_ids``,
        ``status``, ``ds_name``, ...)."""
        kwargs: dict[str, Any] = {"limit": limit}
        if after:
            kwargs["after"] = after
        query = {k: v for k, v in filters.items() if v}
        if query:
            kwargs["extra_query"] = query
        page = _json(self._call("list batches", lambda: self._client.batches.with_raw_response.list(**kwargs)))
        page["data"] = page.get("data") or []  # the service sends null for an empty list
        return page

    def cancel(self, batch_id: str) -> dict[str, Any]:
        return _json(self._call(f"cancel {batch_id}", lambda: self._client.batches.with_raw_response.cancel(batch_id)))

    def download(self, file_id: str, handle: IO[bytes], on_bytes: Callable[[int], None] | None = None) -> int:
        """Stream a file's content into ``handle``; the number of bytes."""
        what = f"download {file_id}"
        written = 0
        try:
            with self._client.files.with_streaming_response.content(file_id) as resp:
                for chunk in resp.iter_bytes(1 << 20):
                    handle.write(chunk)
                    written += len(chunk)
                    if on_bytes:
                        on_bytes(len(chunk))
        except Exception as exc:  # noqa: BLE001 - mapped to one line below, or re-raised
            raise self._error(what, exc) from None
        return written

    def find_batches_for_file(self, input_file_id: str, since: float | None = None) -> list[dict[str, Any]]:
        """Batches whose input is ``input_file_id``, newest first.

        Uses the documented ``input_file_ids`` list filter; how the service
        applies it is ASSUMED, so results are matched here as well, and when
        the filter finds nothing the recent batches (created since ``since``,
        less a margin) are scanned too.
        """
        page = self.list(limit=100, input_file_ids=input_file_id)
        hits = [b for b in page["data"] if b.get("input_file_id") == input_file_id]
        if hits:
            return hits
        after = None
        for _ in range(LOOKUP_MAX_PAGES):
            page = self.list(limit=100, after=after)
            data = page["data"]
            hits.extend(b for b in data if b.get("input_file_id") == input_file_id)
            if not page.get("has_more") or not data:
                break
            oldest = data[-1].get("created_at")
            if since is not None and oldest is not None and oldest < since - LOOKUP_MARGIN_SECONDS:
                break  # newest first: the rest predate this submission
            after = page.get("last_id") or data[-1].get("id")
        return hits

    # -- errors ----------------------------------------------------------------
    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - mapped to one line below, or re-raised
            raise self._error(what, exc) from None

    def _error(self, what: str, exc: BaseException) -> BaseException:
        """``exc`` as one line without the key; anything unknown is re-raised as is."""
        import openai

        where = _safe_url(self.base_url)
        if isinstance(exc, openai.APITimeoutError):
            return BatchAPIError(scrub(f"{what}: no answer from {where} within {self.timeout:g}s (timed out)", self._key),
                                 lost=True)
        if isinstance(exc, openai.APIConnectionError) or _is_transport_error(exc):
            return BatchAPIError(scrub(f"{what}: the connection to {where} failed or was dropped", self._key), lost=True)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            body = exc.body if isinstance(exc.body, dict) else {}
            code = body.get("code") or exc.code
            message = body.get("message") or ""
            if not isinstance(message, str):
                message = json.dumps(message, ensure_ascii=False)
            message = " ".join(message.split())[:300]
            if status == 401:
                text = (f"{what}: the service refused the API key (HTTP 401{' ' + str(code) if code else ''}); "
                        f"check {API_KEY_ENV} is a key of the region of {where}")
            elif status == 403:
                text = f"{what}: not allowed (HTTP 403{' ' + str(code) if code else ''}){': ' + message if message else ''}"
            elif status == 429:
                text = f"{what}: rate limited by the service (HTTP 429{' ' + str(code) if code else ''}); try again later"
            else:
                text = f"{what}: HTTP {status}{' ' + str(code) if code else ''}{': ' + message if message else ''}"
            retryable = status in (408, 409, 429) or status >= 500
            return BatchAPIError(scrub(text, self._key), status=status, code=str(code) if code else None,
                                 param=body.get("param"), retryable=retryable,
                                 retry_after=_retry_after(exc.response.headers) if retryable else None)
        if isinstance(exc, openai.OpenAIError):
            return BatchAPIError(scrub(f"{what}: {type(exc).__name__}", self._key))
        return exc


def _json(resp) -> dict[str, Any]:
    return resp.http_response.json()


def _is_transport_error(exc: BaseException) -> bool:
    """An HTTP transport error raised while streaming (not wrapped by the SDK)."""
    return any(cls.__module__.split(".")[0] in ("httpx", "httpx2", "httpcore", "httpcore2")
               for cls in type(exc).__mro__ if cls.__name__.endswith(("Error", "Exception")))


def _retry_after(headers) -> float | None:
    """Seconds the service asked to wait, from Retry-After-Ms or Retry-After."""
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(0.0, float(ms) / 1000)
        sec = headers.get("retry-after")
        if sec is not None:
            return max(0.0, float(sec))
    except (TypeError, ValueError):
        pass
    return None


def retry_delay(attempt: int, asked: float | None) -> float:
    """The wait before retry ``attempt`` (1-based): what the service asked,
    else 0.5 s doubling, capped."""
    if asked is not None:
        return min(asked, MAX_RETRY_DELAY)
    return min(0.5 * 2 ** (attempt - 1), 8.0)


# -- the idempotent create ---------------------------------------------------------

@dataclass
class Created:
    batch: dict[str, Any]
    found: bool  # True: the create's answer was lost and the batch was found by lookup


class LookupFailed(BatchAPIError):
    """A create's answer was lost and the lookup failed too: the batch may exist."""


def create_batch(client: BatchClient, input_file_id: str, endpoint: str, window: str,
                 metadata: Mapping[str, str] | None = None, *, since: float | None = None,
                 attempts: int | None = None, sleep: Callable[[float], None] = time.sleep) -> Created:
    """Create a batch at most once for ``input_file_id``.

    Every input file is uploaded for one submission, so a batch on it is this
    submission's batch. After an answer is lost (or a 5xx, which a gateway
    sends when the answer was lost behind it), look for that batch before
    trying again. A 429 is retried after the wait the service asks for.
    """
    attempts = client.max_retries + 1 if attempts is None else max(1, attempts)
    last: BatchAPIError | None = None
    for attempt in range(1, attempts + 1):
        if attempt > 1:
            sleep(retry_delay(attempt - 1, last.retry_after if last else None))
        try:
            return Created(client.create(input_file_id, endpoint, window, metadata), found=False)
        except BatchAPIError as exc:
            last = exc
            if exc.definite:
                raise
            if exc.lost or (exc.status or 0) >= 500:
                try:
                    hits = client.find_batches_for_file(input_file_id, since)
                except BatchAPIError as lookup:
                    raise LookupFailed(
                        f"{exc.message}; looking for the batch failed too ({lookup.message}), so it may exist",
                        status=lookup.status, lost=True) from None
                if hits:
                    return Created(_newest(hits), found=True)
    assert last is not None
    raise last


def _newest(batches: list[dict[str, Any]]) -> dict[str, Any]:
    return max(batches, key=lambda b: b.get("created_at") or 0)


# -- a submission, recorded ---------------------------------------------------------

@dataclass
class Submitted:
    entry: Any  # ledger.Entry, after the create was recorded
    batch: dict[str, Any]
    how: str  # "created" | "found" (answer lost, found by lookup) | "recovered" (an earlier run's batch)


def submit(client: BatchClient, ledger, entry, upload_path: str, *,
           notify: Callable[[str], None] = lambda message: None,
           sleep: Callable[[float], None] = time.sleep, create: bool = True) -> Submitted | None:
    """Upload and create for a ledger entry, recording each step.

    ``entry`` is a fresh intent, or an interrupted one being resumed. When it
    already has an input file, an earlier run may have created the batch:
    look for it first, and create only when it does not exist. Nothing here
    leaves the ledger claiming less than the service has done; an error
    leaves the entry pending for the next run to recover.

    With ``create=False`` an interrupted entry is only looked up: when its
    batch does not exist, the entry is closed as failed and None returned.
    """
    since = entry.started
    file_id = entry.input_file_id
    reused = bool(file_id)
    if reused:
        hits = client.find_batches_for_file(file_id, since)
        if hits:
            batch = _newest(hits)
            entry = ledger.mark_created(entry.token, batch["id"], batch.get("status"))
            return Submitted(entry, batch, "recovered")
    if not create:
        ledger.mark_failed(entry.token, "interrupted before a batch was created; not resumed")
        return None
    if reused:
        notify(f"reusing input file {file_id} from the interrupted submission")
    else:
        entry, file_id = _upload(client, ledger, entry, upload_path, notify)
    try:
        made = _create(client, ledger, entry, file_id, since, sleep)
    except BatchAPIError as exc:
        # A definite refusal of a reused file id: the earlier upload may be
        # gone from the service (accounts hold a limited number of files).
        if not (reused and exc.definite and exc.status in (400, 404) and exc.param in (None, "input_file_id")):
            raise
        notify(f"the service does not take {file_id} any more ({exc.message}); uploading again")
        entry, file_id = _upload(client, ledger, entry, upload_path, notify)
        made = _create(client, ledger, entry, file_id, since, sleep)
    entry = ledger.mark_created(entry.token, made.batch["id"], made.batch.get("status"))
    return Submitted(entry, made.batch, "found" if made.found else "created")


def _upload(client: BatchClient, ledger, entry, upload_path: str, notify):
    file_id = client.upload(upload_path)
    entry = ledger.mark_uploaded(entry.token, file_id)
    notify(f"uploaded {upload_path} as {file_id}")
    return entry, file_id


def _create(client: BatchClient, ledger, entry, file_id: str, since, sleep) -> Created:
    try:
        return create_batch(client, file_id, entry.endpoint, entry.window, entry.metadata, since=since, sleep=sleep)
    except BatchAPIError as exc:
        if exc.definite:
            # Refused outright: nothing was created, so nothing is pending.
            ledger.mark_failed(entry.token, exc.message)
        raise  # otherwise pending: the next submit of this content recovers it


# -- --test -----------------------------------------------------------------------

def write_test_copy(src: str, dest: str, test_model: str, test_url: str) -> int:
    """Copy a batch file with every request sent to the free test model on its
    url, custom_ids kept; the number of requests. Lines must be valid JSON
    objects (the caller has validated the file)."""
    import orjson

    from .reading import read_lines

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
