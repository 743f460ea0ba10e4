"""``batchplan pilot``: send a small stratified random sample of a job's
requests in real time and record what DashScope billed, so that
``compare --calibrate PILOT.jsonl`` can state the job's expected output
tokens and cost with a 95% interval (``planning.estimate``).

1. Draw. Every line is planned (worst-case output). The valid requests are
   cut into strata by model, thinking mode and price tier (the tier decides
   the output price); ``random.Random(seed)`` orders each stratum, and the
   first n_h of that order are sent: a simple random sample of each stratum,
   repeatable by seed. n is shared in proportion to the strata's lines, at
   least 2 each. With a target half-width a first round is sent, the
   requests needed are worked out from its spread (Neyman allocation, FPC)
   and the next ones of each stratum's order top it up.
2. Guard. The pilot is billed at the real-time price; its worst-case cost
   (every answer at its max_tokens) is checked against the budget and shown
   before anything is sent, and again before a top-up.
3. Send. Each body goes unchanged but for ``stream: true`` and
   ``stream_options.include_usage`` (so stream-only thinking models answer
   too, and the last chunk carries usage), through the ``openai`` SDK with
   its own retries off: this loop owns them, so they are counted. Requests
   start no faster than the model's RPM and TPM allow (per second, as the
   service enforces: RPM/60 and TPM/60), at most ``concurrency`` at once,
   starting at 2 and doubling after successes; a 429 halves it and backs off
   (jittered, doubling; DashScope sends no Retry-After), a 5xx or a lost
   connection is retried a few times.
4. Record. One line per request, in the Batch API output-line format
   (``custom_id``, ``response.status_code``, ``response.body`` a
   ``chat.completion`` with ``usage``, ``error``), so everything that reads
   batch output reads it; plus a ``pilot`` object (stratum, the prompt
   tokens batchplan counted, attempts, latency). Lines are written and
   flushed as they come back: Ctrl-C stops the sending and keeps them. The
   ledger records the pilot's intent before the first request and its end.

ASSUMPTION: real-time and batch answers of a request are draws from the same
length distribution (same model, same body). Nothing published confirms or
denies it; the report says so.
"""

from __future__ import annotations

import hashlib
import random
import tempfile
import threading
import time
import uuid
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence

import orjson

from batchplan.catalog.catalog import Catalog, default_catalog
from batchplan.catalog.money import money
from batchplan.errors import BatchplanError, GuardError, InputError
from batchplan.jobs.client import BatchAPIError, BatchClient, scrub
from batchplan.planning import estimate as est
from batchplan.planning.aggregate import PlannedRequest
from batchplan.planning.planner import BatchPlan, Planner, plan_files
from batchplan.planning.reading import STDIN, open_input, read_blocks, save_stdin
from batchplan.planning.realtime import RateLimit, rate_limit

CHAT_URL = "/v1/chat/completions"
DEFAULT_REQUESTS = 50
FIRST_ROUND = 30  # requests of the first round with a target
MAX_TOP_UPS = 3  # rounds after the first: the spread measured grows as long answers turn up
MAX_REQUESTS = 1000  # at 1,000 even a CV of 1.5 gives about +-9%: more is a job, not a pilot
MAX_SHARE = 0.10  # of the valid lines, beyond which a pilot costs a fair part of the job itself
MIN_CAP = 20
START_CONCURRENCY = 2
MAX_THROTTLED = 30  # 429s one request may take before it is given up (about 12 minutes of backoff)
MAX_FAILED = 3  # 5xx or lost answers one request may take
BACKOFF_START = 1.0  # seconds
BACKOFF_CAP = 30.0  # limits "recover within one minute" (pilot facts 2.1)
RETRY_START = 0.5
# When the catalog has no limits for a model: qwen-max's defaults (pilot facts 2.2).
FALLBACK_LIMIT = RateLimit(60, 100_000, True, "default (no catalog limit)")


class PilotError(InputError):
    """A pilot that cannot be drawn (no requests, a size larger than useful)."""


class PilotInterrupted(BatchplanError):
    """Ctrl-C: the sending stopped; the answers so far are kept."""

    exit_code = 130


def useful_limit(lines: int) -> int:
    """The most requests a pilot of a job of ``lines`` valid requests may send:
    10% of them (at least MIN_CAP), at most MAX_REQUESTS, never all."""
    return max(0, min(MAX_REQUESTS, max(MIN_CAP, int(lines * MAX_SHARE)), lines - 1))


# -- the draw ------------------------------------------------------------------------

@dataclass(frozen=True)
class Candidate:
    """One valid request of the job, as planning saw it."""

    file: str
    line: int
    custom_id: str
    model: str
    thinking: bool
    tier: str
    prompt_tokens: int
    worst_cost: Decimal | None  # real-time, every answer at its cap


@dataclass
class Draw:
    """Strata, each stratum's seeded order, and how many of each are taken so far."""

    design: est.Design
    order: dict[tuple, list[Candidate]]
    taken: dict[tuple, int]
    seed: int

    @property
    def lines(self) -> int:
        return sum(len(v) for v in self.order.values())

    def stratum_of(self, c: Candidate) -> tuple:
        return self.design.stratum((c.model, c.thinking, c.tier), c.prompt_tokens)

    def take(self, counts: dict[tuple, int]) -> list[Candidate]:
        """The next requests of each stratum's order up to ``counts`` in all; marks them taken."""
        out = []
        for key, items in self.order.items():
            want = min(len(items), counts.get(key, 0))
            out.extend(items[self.taken[key]:want])
            self.taken[key] = max(self.taken[key], want)
        return out

    def sent(self) -> int:
        return sum(self.taken.values())


def candidates(paths: Sequence[str], catalog: Catalog, region: str, workers: int | None = None) -> tuple[BatchPlan, list[Candidate]]:
    """Plan every line (worst-case output) and keep the valid requests with a custom_id."""
    rows: list[Candidate] = []

    def keep(r: PlannedRequest) -> None:
        # Embedding requests generate nothing: their cost is exact, nothing to pilot.
        if r.error is None and r.custom_id is not None and r.model is not None and r.output_tokens != 0:
            rows.append(Candidate(r.file or "", r.line, r.custom_id, r.model, r.thinking, r.tier or "-",
                                  r.input_tokens or 0, r.realtime_cost))

    result = plan_files(list(paths), planner=Planner(catalog, region), workers=workers, on_request=keep)
    return result, rows


def draw(rows: Sequence[Candidate], seed: int, n: int) -> Draw:
    """Strata and each one's seeded order, for a pilot of about ``n``."""
    groups: dict[tuple, list[int]] = {}
    for c in rows:
        groups.setdefault((c.model, c.thinking, c.tier), []).append(c.prompt_tokens)
    design = est.design(groups, n)
    members: dict[tuple, list[Candidate]] = {}
    for c in rows:
        members.setdefault(design.stratum((c.model, c.thinking, c.tier), c.prompt_tokens), []).append(c)
    order = est.draw_order(members, seed)
    return Draw(design, order, {k: 0 for k in order}, seed)


def first_counts(d: Draw, n: int) -> dict[tuple, int]:
    return est.allocate({k: len(v) for k, v in d.order.items()}, n)


def worst_cost(selected: Iterable[Candidate]) -> Decimal | None:
    total = Decimal(0)
    for c in selected:
        if c.worst_cost is None:
            return None
        total += c.worst_cost
    return total


def check_budget(cost: Decimal | None, max_cost: Decimal | None, currency: str, requests: int) -> str:
    """The guard's line, or GuardError when over ``max_cost`` (or unknown under one)."""
    if cost is None:
        if max_cost is not None:
            raise GuardError(f"the worst-case real-time cost of the {requests} pilot request(s) is unknown "
                             f"(a model has no price), so the budget {max_cost} {currency} cannot be checked; nothing sent",
                             hint="max_cost")
        return f"{requests} pilot request(s); worst-case real-time cost unknown (a model has no price)"
    text = f"{requests} pilot request(s); worst-case real-time cost {money(cost)} {currency} (every answer at its max_tokens)"
    if max_cost is not None and cost > max_cost:
        raise GuardError(f"the worst-case real-time cost of the {requests} pilot request(s), {money(cost)} {currency}, "
                         f"is over the budget {max_cost} {currency} by {money(cost - max_cost)}; nothing sent",
                         hint="max_cost")
    return text


def bodies(wanted: Sequence[Candidate], sources: dict[str, str] | None = None) -> dict[tuple[str, int], dict]:
    """(file, line) -> the request body of each wanted line, read again from
    its file (``sources``: where a file named ``-`` was saved)."""
    by_file: dict[str, set[int]] = {}
    for c in wanted:
        by_file.setdefault(c.file, set()).add(c.line)
    out: dict[tuple[str, int], dict] = {}
    for path, numbers in by_file.items():
        left = set(numbers)
        with open_input((sources or {}).get(path, path)) as handle:
            for block in read_blocks(handle, name=path):
                for line in block.lines():
                    if line.number in left:
                        out[(path, line.number)] = orjson.loads(line.raw)["body"]
                        left.discard(line.number)
                if not left:
                    break
    return out


# -- sending -------------------------------------------------------------------------

class ChatClient(BatchClient):
    """Real-time chat completions over the same ``openai`` client and error
    mapping (key scrubbed) as the Batch API calls; SDK retries off."""

    def __init__(self, api_key: str, base_url: str, timeout: float = 300.0):
        super().__init__(api_key, base_url, timeout=timeout, max_retries=0)

    def stream(self, body: dict, stop: threading.Event | None = None) -> dict[str, Any]:
        """Send one body, streamed with usage; the answer gathered from its
        chunks: id, model, content, reasoning_content, finish_reason, usage.
        Raises BatchAPIError (``retryable`` for 429, 5xx and lost answers)."""
        extra = {k: v for k, v in body.items() if k not in ("model", "messages", "stream", "stream_options")}
        what = f"chat completion ({body.get('model')})"
        try:
            stream = self._client.chat.completions.create(
                model=body["model"], messages=body["messages"], stream=True,
                stream_options={"include_usage": True}, extra_body=extra or None)
            answer: dict[str, Any] = {"id": None, "model": None, "content": [], "reasoning": [], "finish_reason": None,
                                      "usage": None, "created": None}
            with stream:
                for chunk in stream:
                    if stop is not None and stop.is_set():
                        raise _Stopped()
                    data = chunk.model_dump(exclude_unset=False)
                    answer["id"] = answer["id"] or data.get("id")
                    answer["model"] = answer["model"] or data.get("model")
                    answer["created"] = answer["created"] or data.get("created")
                    for choice in data.get("choices") or []:
                        delta = choice.get("delta") or {}
                        if delta.get("content"):
                            answer["content"].append(delta["content"])
                        if delta.get("reasoning_content"):  # thinking, in DashScope's extra field
                            answer["reasoning"].append(delta["reasoning_content"])
                        if choice.get("finish_reason"):
                            answer["finish_reason"] = choice["finish_reason"]
                    if data.get("usage"):
                        answer["usage"] = chunk.usage.model_dump(exclude_none=True)
            return answer
        except _Stopped:
            raise
        except BatchAPIError:
            raise
        except Exception as exc:  # noqa: BLE001 - mapped to one line, key scrubbed
            error = self._error(what, exc)
            if isinstance(error, BatchAPIError) and error.status is None and not error.lost:
                # An error event inside a 200 stream: the body carries the code.
                body_doc = getattr(exc, "body", None)
                code = (body_doc or {}).get("code") if isinstance(body_doc, dict) else None
                if code:
                    throttled = "limit" in str(code) or "Throttling" in str(code) or "quota" in str(code)
                    error = BatchAPIError(scrub(f"{what}: the stream ended with {code}", self._key), code=str(code),
                                          status=429 if throttled else None, retryable=throttled)
            raise error from None


class _Stopped(BatchplanError):
    """Internal: the pilot was told to stop while a stream was being read."""


class Pacer:
    """Request starts no faster than RPM/60 a second and prompt tokens no
    faster than TPM/60 a second, per model (the service enforces its limits
    per second too). TPM counts output as well; the output is not known
    before it comes, so it is not reserved: the few answers in flight
    (``concurrency``) are what a 429 then reins in. ``clock``/``sleep`` are
    seams for tests."""

    def __init__(self, limits: dict[str, RateLimit], clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.limits = limits
        self.clock = clock
        self.sleep = sleep
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait(self, model: str, tokens: int) -> None:
        limit = self.limits.get(model, FALLBACK_LIMIT)
        with self._lock:
            now = self.clock()
            start = max(now, self._next.get(model, now))
            self._next[model] = start + max(60.0 / limit.rpm, 60.0 * tokens / limit.tpm)
        if start > now:
            self.sleep(start - now)


class Gate:
    """At most ``limit`` requests in flight; the limit starts low, doubles
    after ``limit`` successes in a row and halves on a 429."""

    def __init__(self, most: int):
        self.most = max(1, most)
        self.limit = min(START_CONCURRENCY, self.most)
        self.active = 0
        self.streak = 0
        self._cond = threading.Condition()

    def __enter__(self):
        with self._cond:
            while self.active >= self.limit:
                self._cond.wait()
            self.active += 1
        return self

    def __exit__(self, *exc):
        with self._cond:
            self.active -= 1
            self._cond.notify_all()

    def success(self) -> None:
        with self._cond:
            self.streak += 1
            if self.streak >= self.limit and self.limit < self.most:
                self.limit = min(self.most, self.limit * 2)
                self.streak = 0
                self._cond.notify_all()

    def throttled(self) -> None:
        with self._cond:
            self.limit = max(1, self.limit // 2)
            self.streak = 0


@dataclass
class Sent:
    """One pilot request's outcome, as its output line says."""

    candidate: Candidate
    ok: bool
    line: dict[str, Any]
    attempts: int
    throttled: int


@dataclass
class PilotResult:
    out: str
    sent: list[Sent] = field(default_factory=list)
    interrupted: bool = False
    guard: list[str] = field(default_factory=list)  # the guard's lines, round by round
    target: str | None = None  # what the target asked and what was reached
    entry: Any = None  # the ledger entry

    @property
    def ok(self) -> int:
        return sum(1 for s in self.sent if s.ok)

    @property
    def throttled(self) -> int:
        return sum(s.throttled for s in self.sent)


def _output_line(c: Candidate, stratum: tuple, d: Draw, answer: dict | None, error: BatchAPIError | None,
                 attempts: int, throttled: int, seconds: float) -> dict[str, Any]:
    """The Batch API output line of one pilot request, plus what the estimator needs."""
    pilot = {
        "stratum": {"model": stratum[0], "thinking": stratum[1], "tier": stratum[2], "bin": stratum[3],
                    "edges": list(d.design.edges.get(stratum[:3], ()))},
        "stratum_lines": len(d.order[stratum]),
        "seed": d.seed,
        "file": c.file,
        "line": c.line,
        "counted_prompt_tokens": c.prompt_tokens,
        "attempts": attempts,
        "throttled": throttled,
        "latency_seconds": round(seconds, 3),
        "mode": "realtime",
    }
    if answer is None:
        code = (error.code if error else None) or "error"
        message = error.message if error else "no answer"
        return {"id": str(uuid.uuid4()), "custom_id": c.custom_id,
                "response": {"status_code": error.status if error and error.status else 0, "request_id": None,
                             "body": {"error": {"code": code, "message": message}}},
                "error": {"code": code, "message": message}, "pilot": pilot}
    message: dict[str, Any] = {"role": "assistant", "content": "".join(answer["content"])}
    if answer["reasoning"]:
        message["reasoning_content"] = "".join(answer["reasoning"])
    body = {
        "created": answer["created"],
        "usage": answer["usage"],
        "model": answer["model"],
        "id": answer["id"],
        "choices": [{"finish_reason": answer["finish_reason"], "index": 0, "message": message}],
        "object": "chat.completion",
    }
    rid = answer["id"] or str(uuid.uuid4())
    return {"id": rid, "custom_id": c.custom_id, "response": {"status_code": 200, "request_id": rid, "body": body},
            "error": None, "pilot": pilot}


def send_one(client: ChatClient, c: Candidate, body: dict, pacer: Pacer, gate: Gate, stop: threading.Event,
             rng: random.Random, sleep: Callable[[float], None] | None) -> tuple[dict | None, BatchAPIError | None, int, int]:
    """(answer, last error, attempts, 429s) of one request, retried as the module says."""
    attempts = throttled = failed = 0
    while not stop.is_set():
        attempts += 1
        pacer.wait(c.model, c.prompt_tokens)
        with gate:
            try:
                answer = client.stream(body, stop)
            except BatchAPIError as exc:
                error = exc
            else:
                if answer["usage"] is None:
                    error = BatchAPIError(f"{c.custom_id}: the stream ended without usage", code="no_usage")
                    return None, error, attempts, throttled
                gate.success()
                return answer, None, attempts, throttled
        if error.status == 429:
            throttled += 1
            gate.throttled()
            if throttled >= MAX_THROTTLED:
                return None, error, attempts, throttled
            delay = min(BACKOFF_CAP, BACKOFF_START * 2 ** (throttled - 1))
        elif error.lost or (error.status or 0) >= 500:
            failed += 1
            if failed > MAX_FAILED:
                return None, error, attempts, throttled
            delay = RETRY_START * 2 ** (failed - 1)
        else:
            return None, error, attempts, throttled
        with gate._cond:  # the jitter's generator is shared by the threads
            jitter = 0.5 + rng.random() / 2
        if sleep is None:
            stop.wait(delay * jitter)  # Ctrl-C ends the wait at once
        else:
            sleep(delay * jitter)
    return None, None, attempts, throttled


def send(client: ChatClient, selected: Sequence[Candidate], d: Draw, out_handle, *, concurrency: int = 4,
         pacer: Pacer, sleep: Callable[[float], None] | None = None, on_result: Callable[[Sent], None] | None = None,
         clock: Callable[[], float] = time.monotonic, result: PilotResult, sources: dict[str, str] | None = None) -> None:
    """Send ``selected`` (in a random order, so that any part of it is a
    random sample too), write each output line as it comes back. A
    KeyboardInterrupt (raised in this thread, e.g. by Ctrl-C or by
    ``on_result``) stops it: nothing more is started, the requests in flight
    are abandoned, the lines written stay; raises PilotInterrupted."""
    found = bodies(selected, sources)
    order = list(selected)
    random.Random(d.seed + d.sent()).shuffle(order)
    stop = threading.Event()
    gate = Gate(concurrency)
    rng = random.Random(d.seed)
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="pilot")
    futures: dict[Future, tuple[Candidate, float]] = {}
    pending = iter(order)

    def start_more() -> None:
        while len(futures) < max(1, concurrency) and not stop.is_set():
            c = next(pending, None)
            if c is None:
                return
            body = found[(c.file, c.line)]
            futures[pool.submit(send_one, client, c, body, pacer, gate, stop, rng, sleep)] = (c, clock())

    try:
        start_more()
        while futures:
            done, _ = wait(list(futures), return_when=FIRST_COMPLETED)
            for future in done:
                c, started = futures.pop(future)
                answer, error, attempts, throttled = future.result()
                if answer is None and error is None:
                    continue  # stopped
                line = _output_line(c, d.stratum_of(c), d, answer, error, attempts, throttled, clock() - started)
                out_handle.write(orjson.dumps(line) + b"\n")
                out_handle.flush()
                sent = Sent(c, answer is not None, line, attempts, throttled)
                result.sent.append(sent)
                if on_result is not None:
                    on_result(sent)
            start_more()
    except KeyboardInterrupt:
        stop.set()
        for future in futures:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
        result.interrupted = True
        raise PilotInterrupted(
            f"interrupted: {result.ok} answer(s) kept in {result.out}; requests in flight were abandoned "
            "(they may still be billed) and, being the slow ones, are likely the long answers") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# -- the whole pilot -----------------------------------------------------------------

def read_sent(path: str) -> dict[str, dict]:
    """custom_id -> output line of an existing pilot file (to top it up)."""
    out = {}
    with open(path, "rb") as handle:
        for raw in handle:
            if raw.strip():
                doc = orjson.loads(raw)
                out[doc.get("custom_id")] = doc
    return out


def samples_from(sent: Sequence[Sent], d: Draw) -> list[est.Stratum]:
    """Strata as the estimator takes them, from the answers so far."""
    pairs: dict[tuple, list[tuple[int, int]]] = {}
    for s in sent:
        usage = s.line["response"]["body"].get("usage") if s.ok else None
        if usage:
            pairs.setdefault(d.stratum_of(s.candidate), []).append((s.candidate.prompt_tokens, int(usage.get("completion_tokens", 0))))
    return [est.Stratum(key, len(items), sum(c.prompt_tokens for c in items), tuple(pairs.get(key, ())))
            for key, items in d.order.items()]


def achieved(strata: list[est.Stratum]) -> float | None:
    """The relative half-width of the 95% interval of the output total so far (None: not every stratum answered)."""
    if any(s.n == 0 for s in strata):
        return None
    by_model: dict[str, list[est.Stratum]] = {}
    for s in strata:
        by_model.setdefault(s.model, []).append(s)
    parts = []
    for items in by_model.values():
        method = est.choose_method(items)[0]
        parts.extend((est.stratum_estimate(s, method), 1.0) for s in items)
    interval = est.combine(parts)
    if interval.estimate <= 0:
        return None
    return (interval.high - interval.low) / 2 / interval.estimate


def plan_top_up(strata: list[est.Stratum], target: float, cap: int) -> tuple[int, dict[tuple, int], str]:
    """How many requests in all a target half-width needs, capped, and per stratum."""
    by_model: dict[str, list[est.Stratum]] = {}
    for s in strata:
        if s.n:
            by_model.setdefault(s.model, []).append(s)
    methods = {m: est.choose_method(v)[0] for m, v in by_model.items()}
    sampled = [s for s in strata if s.n >= 2]
    need = sum(s.n for s in strata)
    if sampled:
        need = max(need, est.required_requests(sampled, methods, target))
    wanted = min(need, cap)
    counts = est.neyman(sampled, methods, wanted) if sampled else {}
    note = (f"target +-{target:.0%} at 95% needs about {need:,} request(s)"
            + (f"; capped at {cap:,} (a pilot larger than that is not useful: run the job)" if need > cap else ""))
    return wanted, counts, note


def run_pilot(paths: Sequence[str], out: str, *, client: ChatClient, catalog: Catalog | None = None, region: str = "intl",
              requests: int | None = None, target: float | None = None, max_cost: Decimal | None = None,
              confirm: Callable[[str], bool] = lambda text: False, seed: int = 0, concurrency: int = 4,
              rpm: int | None = None, tpm: int | None = None, ledger=None, base_url: str = "",
              sleep: Callable[[float], None] | None = None, clock: Callable[[], float] = time.monotonic,
              on_result: Callable[[Sent], None] | None = None, notify: Callable[[str], None] = lambda text: None,
              workers: int | None = None) -> PilotResult:
    """The whole pilot: draw, guard, send, record (the module's docstring).
    ``confirm(text)`` is asked before each round is sent (the CLI asks on a
    terminal, or answers --yes). ``-`` in ``paths`` is standard input, saved
    for the pilot's length (the chosen requests are read back from it).
    Raises PilotError, GuardError, PilotInterrupted."""
    options = dict(client=client, catalog=catalog, region=region, requests=requests, target=target, max_cost=max_cost,
                   confirm=confirm, seed=seed, concurrency=concurrency, rpm=rpm, tpm=tpm, ledger=ledger,
                   base_url=base_url, sleep=sleep, clock=clock, on_result=on_result, notify=notify, workers=workers)
    if STDIN not in paths:
        return _pilot(list(paths), out, sources={}, **options)
    if list(paths).count(STDIN) > 1:
        raise PilotError(f"{STDIN}: standard input named twice")
    with tempfile.TemporaryDirectory(prefix="batchplan-pilot-") as scratch:
        copy = save_stdin(scratch)
        return _pilot([copy if p == STDIN else p for p in paths], out, sources={STDIN: copy}, **options)


def _pilot(paths: list[str], out: str, *, client, catalog, region, requests, target, max_cost, confirm, seed, concurrency,
           rpm, tpm, ledger, base_url, sleep, clock, on_result, notify, workers, sources: dict[str, str]) -> PilotResult:
    catalog = catalog or default_catalog()
    plan, rows = candidates(paths, catalog, region, workers)
    named = {copy: name for name, copy in sources.items()}
    if named:  # the requests of standard input are "-" wherever they are shown or recorded
        rows = [replace(c, file=named[c.file]) if c.file in named else c for c in rows]
        paths = [named.get(p, p) for p in paths]
    if not rows:
        raise PilotError(f"no valid requests with a custom_id in {', '.join(paths)}")
    cap = useful_limit(len(rows))
    if requests is not None and requests > cap:
        raise PilotError(f"a pilot of {requests:,} requests is larger than is useful for {len(rows):,} request(s): "
                         f"at most {cap:,} ({MAX_SHARE:.0%} of the requests, at most {MAX_REQUESTS:,}); "
                         "a larger sample costs a fair part of the job itself", hint="requests")
    if cap < 2:
        raise PilotError(f"{len(rows)} request(s) are too few for a pilot: compare --output-tokens, or run the job")
    first = requests if requests is not None else (min(FIRST_ROUND, cap) if target is not None else min(DEFAULT_REQUESTS, cap))
    d = draw(rows, seed, first)
    limits = {m: (rate_limit(catalog, m, rpm, tpm) or FALLBACK_LIMIT) for m in {c.model for c in rows}}
    pacer = Pacer(limits, clock, sleep or time.sleep)
    result = PilotResult(out)
    currency = plan.currency

    spent: list[Decimal | None] = []  # worst-case cost of each round sent

    def guard(selected: list[Candidate]) -> None:
        # The budget holds for the whole pilot: earlier rounds count against it.
        cost = worst_cost(selected)
        before = None if any(c is None for c in spent) else sum(spent, Decimal(0))
        whole = None if cost is None or before is None else cost + before
        text = check_budget(whole, max_cost, currency, len(selected) + sum(1 for _ in result.sent))
        if spent:
            text = f"top-up of {len(selected)}: " + text + " in all"
        result.guard.append(text)
        if not confirm(text):
            raise GuardError("not confirmed; nothing sent", hint="yes")
        spent.append(cost)

    selected = d.take(first_counts(d, first))
    guard(selected)  # before the file is opened or the ledger written
    digest = hashlib.sha256("\n".join(sorted(f"{c.file}:{c.line}:{c.custom_id}" for c in selected)).encode()).hexdigest()
    if ledger is not None:
        cost = worst_cost(selected)
        result.entry = ledger.begin(sha256=digest, path=out, region=region, base_url=base_url, endpoint=CHAT_URL,
                                    window="realtime", metadata={"kind": "pilot", "seed": str(seed)},
                                    estimate={"pilot_requests": len(selected), "currency": currency,
                                              "worst_case_realtime_cost": None if cost is None else str(cost)})
    status = "completed"
    try:
        with open(out, "wb") as handle:
            send(client, selected, d, handle, concurrency=concurrency, pacer=pacer, sleep=sleep, sources=sources,
                 on_result=on_result, clock=clock, result=result)
            for _ in range(MAX_TOP_UPS if target is not None else 0):
                strata = samples_from(result.sent, d)
                reached = achieved(strata)
                if reached is not None and reached <= target:
                    notify(f"reached +-{reached:.1%} at 95% on the output tokens with {result.ok:,} answers")
                    break
                wanted, counts, note = plan_top_up(strata, target, cap)
                result.target = note
                notify(note + (f" (+-{reached:.1%} so far)" if reached is not None else ""))
                more = d.take(counts)
                if not more:
                    break
                guard(more)
                send(client, more, d, handle, concurrency=concurrency, pacer=pacer, sleep=sleep, sources=sources,
                     on_result=on_result, clock=clock, result=result)
    except PilotInterrupted:
        status = "interrupted"
        raise
    except GuardError:
        status = "refused"
        raise
    finally:
        if ledger is not None and result.entry is not None:
            ledger.mark_created(result.entry.token, f"pilot-{result.entry.token}", status=status)
    return result


__all__ = ["ChatClient", "PilotError", "PilotInterrupted", "PilotResult", "run_pilot", "useful_limit"]
