"""The DashScope Batch API, through the ``openai`` SDK ([BATCH] in the catalog's sources).

This is the only module that imports ``openai`` (import-linter holds it), and it does so inside
functions: the CLI starts without paying for it.

Every failure surfaces as ``BatchAPIError``: one line, built here from the
HTTP status and the service's error code and message, with the API key
scrubbed out. The SDK's own exception text is never shown, because it can
carry request details.

The calls are plain: the create that must not be repeated blindly, and the
ledger-backed submission around it, are in ``jobs.submit``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import IO, Any, Callable, Mapping
from urllib.parse import urlsplit

from batchplan.catalog.catalog import DEFAULT_REGION, default_catalog
from batchplan.errors import APIError

API_KEY_ENV = "DASHSCOPE_API_KEY"
BASE_URL_ENV = "DASHSCOPE_BASE_URL"
DEFAULT_TIMEOUT = 60.0
DEFAULT_MAX_RETRIES = 2

TERMINAL_STATUSES = frozenset({"completed", "failed", "expired", "cancelled"})
# A lookup scans batches created since the submission began, less this margin
# for clock skew between this machine and the service.
LOOKUP_MARGIN_SECONDS = 3600
LOOKUP_MAX_PAGES = 10
MAX_RETRY_DELAY = 60.0


class BatchAPIError(APIError):
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

    def delete_file(self, file_id: str) -> None:
        """Delete a file on the service (files there never expire; an account holds 10,000)."""
        self._call(f"delete {file_id}", lambda: self._client.files.with_raw_response.delete(file_id))

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
