"""Stage 2: validate. Turn one line into a request, or into the reason it is not one.

These are the checks a single line can fail on its own. Rules over a whole
file (one model per file, unique custom_id, size limits) live in ``jobs.rules``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import orjson

from batchplan.planning.reading import Line, at_line

CHAT_URL = "/v1/chat/completions"
EMBEDDINGS_URL = "/v1/embeddings"
TEST_URL = "/v1/chat/ds-test"
URLS = (CHAT_URL, EMBEDDINGS_URL, TEST_URL)
ROLES = ("system", "user", "assistant", "tool", "function")
# The newest Batch API page's limit on custom_id (catalog batch_limits.max_custom_id_chars).
MAX_CUSTOM_ID_CHARS = 256


@dataclass(frozen=True)
class Request:
    """One valid line of a batch file."""

    line: int
    custom_id: str
    url: str
    body: dict[str, Any]
    size: int  # bytes of the line as written

    @property
    def model(self) -> str:
        return self.body["model"]

    @property
    def is_embedding(self) -> bool:
        return self.url == EMBEDDINGS_URL


@dataclass(frozen=True)
class LineError:
    """A line left out of the plan, and why."""

    line: int
    reason: str
    custom_id: str | None = None
    file: str | None = None

    @property
    def message(self) -> str:
        """``PATH:LINE: reason``, as every command prints it."""
        return at_line(self.file, self.line, self.reason)


def parse_line(line: Line) -> Request | LineError:
    """Parse and check one line. Never raises on bad input."""
    try:
        doc = orjson.loads(line.raw)
    except orjson.JSONDecodeError as exc:
        return LineError(line.number, json_reason(line, exc))
    number = line.number
    if not isinstance(doc, dict):
        return LineError(number, f"not a JSON object (found {_kind(doc)})")
    custom_id = doc.get("custom_id")
    cid = custom_id if isinstance(custom_id, str) else None
    reason = _check_envelope(doc) or _check_body(doc["body"], doc["url"])
    if reason:
        return LineError(number, reason, cid)
    return Request(number, custom_id, doc["url"], doc["body"], len(line.raw))


# orjson refuses documents nested deeper than this (its own limit, not the
# service's; a real request is nowhere near it).
MAX_NESTING = 1024


def json_reason(line: Line, exc: orjson.JSONDecodeError) -> str:
    """Why a line is not JSON, in a few words: orjson's message cut to its
    reason, where it is on the line, and what the usual cause is."""
    try:
        line.raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return f"not valid UTF-8 (byte {bad.start + 1} of the line)"
    what = exc.msg.split(":", 1)[0]
    if what.startswith("depth limit exceeded"):
        return f"nesting too deep to parse (more than {MAX_NESTING} levels of arrays and objects)"
    if what.startswith("unexpected end of data"):
        if line.unterminated:
            return "truncated: the last line ends before its JSON does, and has no newline (was the file cut short?)"
        return "not valid JSON (the line ends before the JSON does; each request must be on one line)"
    return f"not valid JSON ({what}, at column {exc.colno})"


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean"}.get(
        type(value), "null"
    )


def _check_envelope(doc: dict[str, Any]) -> str | None:
    custom_id = doc.get("custom_id")
    if custom_id is None:
        return "missing custom_id"
    if not isinstance(custom_id, str):
        return f"custom_id must be a string, not {_kind(custom_id)}"
    if not custom_id:
        return "custom_id is empty"
    if len(custom_id) > MAX_CUSTOM_ID_CHARS:
        return f"custom_id is {len(custom_id):,} characters; the Batch API takes at most {MAX_CUSTOM_ID_CHARS}"
    method = doc.get("method")
    if method is None:
        return "missing method"
    if method != "POST":
        return f"method must be POST, not {method!r}"
    url = doc.get("url")
    if url is None:
        return "missing url"
    if url not in URLS:
        return f"unknown url {url!r} (expected one of {', '.join(URLS)})"
    body = doc.get("body")
    if body is None:
        return "missing body"
    if not isinstance(body, dict):
        return f"body must be an object, not {_kind(body)}"
    return None


def _check_body(body: dict[str, Any], url: str) -> str | None:
    model = body.get("model")
    if model is None:
        return "missing body.model"
    if not isinstance(model, str) or not model:
        return "body.model must be a non-empty string"
    for key in ("max_tokens", "thinking_budget", "max_completion_tokens"):
        value = body.get(key)
        if value is not None and (type(value) is not int or value < 1):
            return f"body.{key} must be a positive integer"
    thinking = body.get("enable_thinking")
    if thinking is not None and not isinstance(thinking, bool):
        return "body.enable_thinking must be true or false"
    if url == EMBEDDINGS_URL:
        return _check_embedding(body)
    return _check_chat(body)


def _check_embedding(body: dict[str, Any]) -> str | None:
    text = body.get("input")
    if text is None:
        return "missing body.input"
    if isinstance(text, str):
        return None
    if isinstance(text, list) and text and all(isinstance(t, str) for t in text):
        return None
    return "body.input must be a string or a non-empty list of strings"


def _check_chat(body: dict[str, Any]) -> str | None:
    messages = body.get("messages")
    if messages is None:
        return "missing body.messages"
    if not isinstance(messages, list) or not messages:
        return "body.messages must be a non-empty list"
    for i, message in enumerate(messages):
        where = f"body.messages[{i}]"
        if not isinstance(message, dict):
            return f"{where} must be an object"
        role = message.get("role")
        if role not in ROLES:
            return f"{where}.role must be one of {', '.join(ROLES)}"
        content = message.get("content")
        if content is None:
            if role == "assistant" and message.get("tool_calls"):
                continue
            return f"{where}.content is missing"
        if isinstance(content, str):
            continue
        if not isinstance(content, list):
            return f"{where}.content must be a string or a list of parts"
        for j, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type", "text"), str):
                return f"{where}.content[{j}] must be an object with a type"
            if part.get("type", "text") == "text" and not isinstance(part.get("text"), str):
                return f"{where}.content[{j}].text must be a string"
    tools = body.get("tools")
    if tools is not None and (not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools)):
        return "body.tools must be a list of objects"
    fmt = body.get("response_format")
    if fmt is not None and not isinstance(fmt, dict):
        return "body.response_format must be an object"
    return None


_POSITIVE_INTS = ("max_tokens", "thinking_budget", "max_completion_tokens")
_PLAIN_ROLES = ("system", "user", "assistant")  # a tuple: a role may be unhashable


def plain_chat_body(doc: Any) -> dict[str, Any] | None:
    """The body of a parsed line when the line is a plain chat request that
    passes every check above: string contents, roles system/user/assistant,
    no tools, tool calls or partial turns. None otherwise, and then
    ``parse_line`` decides. The planner's fast path; most lines are like
    this, and this costs a fraction of the full checks and builds nothing."""
    if type(doc) is not dict:
        return None
    custom_id = doc.get("custom_id")
    if (type(custom_id) is not str or not custom_id or len(custom_id) > MAX_CUSTOM_ID_CHARS
            or doc.get("method") != "POST" or doc.get("url") != CHAT_URL):
        return None
    body = doc.get("body")
    if type(body) is not dict or body.get("tools") is not None or "translation_options" in body:
        return None
    model = body.get("model")
    if type(model) is not str or not model:
        return None
    for key in _POSITIVE_INTS:
        value = body.get(key)
        if value is not None and (type(value) is not int or value < 1):
            return None
    thinking = body.get("enable_thinking")
    if thinking is not None and type(thinking) is not bool:
        return None
    fmt = body.get("response_format")
    if fmt is not None and type(fmt) is not dict:
        return None
    messages = body.get("messages")
    if type(messages) is not list or not messages:
        return None
    for message in messages:
        if (type(message) is not dict or message.get("role") not in _PLAIN_ROLES
                or type(message.get("content")) is not str or "tool_calls" in message or "partial" in message):
            return None
    return body


# -- facts a line is warned about -----------------------------------------------

# Hosts a batch worker cannot fetch: such a batch is accepted but its requests
# never complete (the maintainers' report; the media must be on the public net).
_LOCAL_HOSTS = ("localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback")


def non_public_media_url(url: str) -> str | None:
    """Why a media part's URL is not public (a file: URL, a local or private
    host), or None. ``data:`` URLs carry the media themselves and are fine;
    ``oss://`` (DashScope's temporary storage) is taken as reachable."""
    import ipaddress
    from urllib.parse import urlsplit

    lowered = url.strip().lower()
    if lowered.startswith("data:") or lowered.startswith("oss://"):
        return None
    if lowered.startswith("file:"):
        return "a file: URL"
    if "://" not in lowered:
        # A path; anything else (base64 audio data, say) is not a location.
        if lowered.startswith(("/", "./", "../", "~")) or re.match(r"^[a-z]:[\\/]", lowered):
            return "a local path"
        return None
    try:
        host = urlsplit(url.strip()).hostname or ""
    except ValueError:
        return "not a URL"
    if not host:
        return "a URL without a host"
    if host in _LOCAL_HOSTS or host.endswith((".local", ".localhost", ".internal", ".lan")):
        return f"a local host ({host})"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    if address.is_private or address.is_loopback or address.is_link_local or address.is_unspecified or address.is_reserved:
        return f"a private address ({host})"
    return None


def media_urls(body: dict[str, Any]):
    """The URLs of a request's media parts (images, audio, video), where given as strings."""
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            if not isinstance(part, dict) or part.get("type", "text") == "text":
                continue
            for key in ("image_url", "image", "video_url", "video", "input_audio", "audio"):
                value = part.get(key)
                if isinstance(value, dict):
                    value = value.get("url") or value.get("data")
                values = value if isinstance(value, list) else [value]
                for item in values:
                    if isinstance(item, str) and item:
                        yield item
