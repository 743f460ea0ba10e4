"""A fake DashScope OpenAI-compatible chat completions endpoint, with
streaming and usage, for ``FakeDashScope`` (a real loopback HTTP server)::

    with FakeDashScope(api_key="sk-test") as server:
        chat = ChatCompletions(sigma=0.8, median=300).attach(server)
        # POST {base_url}/chat/completions now answers, through the real openai client

Behaviour, as the DashScope docs describe it (see the pilot facts):

- ``stream: true`` answers Server-Sent Events of ``chat.completion.chunk``
  objects, each with ``"usage": null``; with ``stream_options.include_usage``
  a last chunk has ``"choices": []`` and the usage; then ``data: [DONE]``.
  Without include_usage no chunk carries usage.
- Thinking requests (``enable_thinking: true``) stream ``reasoning_content``
  first and are refused without ``stream`` (HTTP 400), as stream-only
  thinking models are. ``completion_tokens`` includes the reasoning tokens;
  ``completion_tokens_details.reasoning_tokens`` says how many.
- Completion lengths come from a known skewed distribution: log-normal with
  the given median and sigma, drawn from a generator seeded by the request's
  messages (the same request gets the same length), capped at ``max_tokens``
  (then ``finish_reason`` is ``length``); ``max_tokens`` caps only the
  answer of a thinking request, not its thinking. ``expected_tokens(body)``
  is the mean of that distribution, for tests that know the truth.
- 429s and 5xx come from ``FakeDashScope.inject("POST", "/chat/completions", "429", times=...)``.

Every request answered is kept in ``served`` as (body, usage).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
import zlib
from typing import Any, Callable, Mapping, Optional

__all__ = ["ChatCompletions"]


class ChatCompletions:
    def __init__(
        self,
        *,
        median: float = 300.0,
        sigma: float = 0.8,
        seed: int = 0,
        prompt_tokens_fn: Optional[Callable[[Mapping[str, Any]], int]] = None,
        completion_tokens_fn: Optional[Callable[[Mapping[str, Any]], int]] = None,
        reasoning_share: float = 0.6,
        on_request: Optional[Callable[[Mapping[str, Any]], None]] = None,
    ):
        self.median = median
        self.sigma = sigma
        self.seed = seed
        self.prompt_tokens_fn = prompt_tokens_fn
        self.completion_tokens_fn = completion_tokens_fn
        self.reasoning_share = reasoning_share
        self.on_request = on_request  # called (in the server's thread) before each answer
        self.served: list[tuple[dict, dict]] = []
        self._lock = threading.Lock()
        # The next this-many streams end with an error event after their first chunk
        # (HTTP 200 already sent), as DashScope streams can (pilot facts 2.3).
        self.break_streams = 0
        self.break_code = "limit_burst_rate"

    def attach(self, server) -> "ChatCompletions":
        server.chat = self
        return self

    # -- the distribution ---------------------------------------------------------
    def draw(self, body: Mapping[str, Any]) -> int:
        """Completion tokens before any cap: log-normal(log median, sigma), seeded by the messages."""
        if self.completion_tokens_fn is not None:
            return int(self.completion_tokens_fn(body))
        key = zlib.crc32(json.dumps(body.get("messages"), sort_keys=True, ensure_ascii=False).encode("utf-8"))
        rng = random.Random(key * 7919 + self.seed)
        return 1 + int(rng.lognormvariate(math.log(self.median), self.sigma))

    def lengths(self, body: Mapping[str, Any]) -> tuple[int, int, str]:
        """(reasoning tokens, answer tokens, finish_reason) this endpoint bills for ``body``."""
        drawn = self.draw(body)
        reasoning = int(drawn * self.reasoning_share) if body.get("enable_thinking") is True else 0
        answer = drawn - reasoning
        cap = body.get("max_tokens")
        if isinstance(cap, int) and answer > cap:
            return reasoning, cap, "length"
        return reasoning, answer, "stop"

    def completion_tokens(self, body: Mapping[str, Any]) -> int:
        reasoning, answer, _ = self.lengths(body)
        return reasoning + answer

    def expected_tokens(self) -> float:
        return self.median * math.exp(self.sigma ** 2 / 2)

    def prompt_tokens(self, body: Mapping[str, Any]) -> int:
        if self.prompt_tokens_fn is not None:
            return int(self.prompt_tokens_fn(body))
        return len(json.dumps(body.get("messages", []))) // 4  # a stand-in, not DashScope's rule

    # -- serving --------------------------------------------------------------------
    def serve(self, handler, raw: bytes) -> int:
        """Answer one POST /chat/completions on ``handler``; the status sent."""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return self._error(handler, 400, "The request body is not valid JSON.", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            return self._error(handler, 400, "model and messages are required.", "invalid_parameter_error")
        thinking = body.get("enable_thinking") is True
        stream = body.get("stream") is True
        if thinking and not stream:
            return self._error(handler, 400, "This model only support stream mode, please enable the stream parameter.",
                               "invalid_parameter_error")
        if self.on_request is not None:
            self.on_request(body)
        reasoning, answer, finish = self.lengths(body)
        completion = reasoning + answer
        prompt = self.prompt_tokens(body)
        usage: dict[str, Any] = {"prompt_tokens": prompt, "completion_tokens": completion,
                                 "total_tokens": prompt + completion, "prompt_tokens_details": {"cached_tokens": 0}}
        if thinking:
            usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
        with self._lock:
            self.served.append((body, usage))
        ident = f"chatcmpl-{uuid.uuid4()}"
        created = int(time.time())
        model = body["model"]
        if not stream:
            doc = {"id": ident, "object": "chat.completion", "created": created, "model": model,
                   "choices": [{"index": 0, "message": {"role": "assistant", "content": "x" * min(answer, 64)},
                                "finish_reason": finish}], "usage": usage}
            data = json.dumps(doc).encode("utf-8")
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            return 200

        def chunk(delta: dict | None, finish_reason=None, with_usage=None) -> dict:
            choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish_reason}]
            return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": choices, "usage": with_usage}

        events = [chunk({"role": "assistant", "content": ""})]
        if thinking:
            events.append(chunk({"reasoning_content": "r" * min(reasoning, 32)}))
        events.append(chunk({"content": "x" * min(answer, 64)}))
        events.append(chunk({}, finish))
        options = body.get("stream_options") or {}
        if options.get("include_usage") is True:
            events.append(chunk(None, with_usage=usage))
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        with self._lock:
            broken = self.break_streams > 0
            self.break_streams -= broken
            if broken:
                self.served.pop()
        if broken:
            events = events[:1] + [{"error": {"message": "Request rate increased too quickly.", "type": self.break_code,
                                              "param": None, "code": self.break_code}}]
        try:
            for event in events:
                _write_chunk(handler, b"data: " + json.dumps(event).encode("utf-8") + b"\n\n")
            _write_chunk(handler, b"data: [DONE]\n\n")
            _write_chunk(handler, b"")
        except (BrokenPipeError, ConnectionResetError):
            handler.close_connection = True  # the client stopped reading (it may, once it has [DONE])
        return 200

    @staticmethod
    def _error(handler, status: int, message: str, code: str) -> int:
        data = json.dumps({"error": {"message": message, "type": code, "param": None, "code": code},
                           "request_id": str(uuid.uuid4())}).encode("utf-8")
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
        return status


def _write_chunk(handler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode("ascii") + data + b"\r\n")
    handler.wfile.flush()
