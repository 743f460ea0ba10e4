"""Context cache on the real-time side: which prompt prefixes requests of one
model share, and how many of their tokens a cache would bill at a discount.

Batch gets no cache; this is only for pricing the real-time alternative.

A prefix is the rendered prompt up to a turn boundary (after a message's
closing ``<|im_end|>\\n``): the system prompt, a few-shot block, a tools
block. Requests that state ``cache_control`` use the explicit cache, whose
prefixes end at the message holding each marker; the two caches are mutually
exclusive per request [CONTEXT-CACHE].

What is kept is a mergeable table per model: prefix digest (blake2b of the
prefix text, the same in every process and on every machine) -> its tokens,
the tokens of the prefix before it, and how many requests of each tier start
with it. From the table, whatever order the requests come in:

    hits of a prefix = (its tokens - the previous prefix's tokens) x (uses - 1)

since the first request to use a prefix creates its cache entry (a miss) and
every later one hits it. ``best`` counts that exactly; ``expected`` counts
implicit hits only in whole blocks (``block_tokens``, an assumption).
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from batchplan.planning.templates import SPECIAL

IMPLICIT = "implicit"
EXPLICIT = "explicit"

# Distinct prefixes kept per model. Past this the table keeps those with the
# smallest digests (a bottom-k sample: the same whatever the chunking), and
# the hit figures become a lower bound (``truncated``). While planning a
# block up to twice as many are held, so trimming is not done per request.
MAX_PREFIXES = 20_000
# Prompt-token histogram bins: [0,1), [1,2), [2,4), ... [2^k, 2^(k+1)).
HISTOGRAM_BINS = 22


def histogram_bin(tokens: int) -> int:
    return min(tokens.bit_length(), HISTOGRAM_BINS - 1)


def bin_bounds(index: int) -> tuple[int, int | None]:
    """[low, high) of a histogram bin; high None for the last."""
    low = 0 if index == 0 else 1 << (index - 1)
    return low, (None if index == HISTOGRAM_BINS - 1 else 1 << index)


@dataclass
class Prefix:
    tokens: int
    parent_tokens: int  # tokens of the previous recorded prefix of the same prompt, or 0
    mode: str
    uses: Counter = field(default_factory=Counter)  # tier label -> requests


@dataclass
class ModelStats:
    """Per model: prefixes, input tokens per tier, prompt-token histogram."""

    prefixes: dict[bytes, Prefix] = field(default_factory=dict)
    input_tokens: Counter = field(default_factory=Counter)  # tier -> tokens seen here
    histogram: Counter = field(default_factory=Counter)  # bin -> requests
    explicit_requests: int = 0
    truncated: bool = False

    def merge(self, other: "ModelStats") -> "ModelStats":
        # The smaller table is folded into a copy of the larger one: merging
        # a file's plan block by block costs the size of each block, not of
        # the file's table so far. Neither side changes; a prefix in both
        # gets a new Prefix, the others are shared (never changed after
        # their block is planned).
        big, small = (self.prefixes, other.prefixes) if len(self.prefixes) >= len(other.prefixes) else (other.prefixes, self.prefixes)
        prefixes = dict(big)
        for key, p in small.items():
            mine = prefixes.get(key)
            if mine is None:
                prefixes[key] = p
            else:
                uses = Counter(mine.uses)
                uses.update(p.uses)
                prefixes[key] = Prefix(mine.tokens, mine.parent_tokens, mine.mode, uses)
        out = ModelStats(prefixes, self.input_tokens + other.input_tokens, self.histogram + other.histogram,
                         self.explicit_requests + other.explicit_requests, self.truncated or other.truncated)
        out._bound()
        return out

    def _bound(self) -> None:
        if len(self.prefixes) > MAX_PREFIXES:
            keep = sorted(self.prefixes)[:MAX_PREFIXES]
            self.prefixes = {k: self.prefixes[k] for k in keep}
            self.truncated = True

    def normalized(self) -> "ModelStats":
        """These stats with at most MAX_PREFIXES prefixes: the same whatever
        the chunking. A prefix among the smallest digests of all requests is
        among the smallest of any part of them, so it was never dropped and
        its counts are exact."""
        if len(self.prefixes) <= MAX_PREFIXES:
            return self
        out = ModelStats(dict(self.prefixes), self.input_tokens, self.histogram, self.explicit_requests, True)
        out._bound()
        return out


@dataclass
class RealtimeStats:
    """What real-time pricing needs beyond the rows, per model; merges."""

    models: dict[str, ModelStats] = field(default_factory=dict)

    def merge(self, other: "RealtimeStats | None") -> "RealtimeStats":
        out = RealtimeStats(dict(self.models))
        if other is not None:
            for name, stats in other.models.items():
                out.models[name] = out.models[name].merge(stats) if name in out.models else stats.merge(ModelStats())
        return out


def _has_marker(content: Any) -> bool:
    return isinstance(content, list) and any(isinstance(p, dict) and p.get("cache_control") for p in content)


def explicit_marks(body: dict) -> set[int]:
    """Indexes of the messages holding a ``cache_control`` marker."""
    return {i for i, m in enumerate(body.get("messages") or ()) if isinstance(m, dict) and _has_marker(m.get("content"))}


def boundaries(pieces: list[str | None]) -> list[int]:
    """Piece indexes just after each closed turn (``<|im_end|>`` then "\\n")."""
    return [i + 1 for i in range(1, len(pieces)) if pieces[i] == "\n" and pieces[i - 1] is SPECIAL]


def observe(stats: RealtimeStats, model: str, tier: str, input_tokens: int, pieces: list[str | None] | None,
            count_piece, explicit: set[int] | None, minimums: dict[str, int], digests: "PrefixDigests | None" = None) -> None:
    """Record one request: its prefixes (``pieces`` from templates.render;
    None for an embedding), its input tokens and its histogram bin.

    ``count_piece`` counts one text piece; ``explicit`` holds the indexes of
    the messages with a marker (empty: implicit cache). ``record`` does the
    same from counts already made."""
    cuts: list[int] = []
    cut_tokens: list[int] = []
    if pieces is not None:
        count_turns(pieces, count_piece, cuts, cut_tokens)
    record(stats, model, tier, input_tokens, pieces, cuts, cut_tokens, explicit, minimums, digests)


def count_turns(pieces: list[str | None], count_piece, cuts: list[int], cut_tokens: list[int]) -> int:
    """The tokens of ``pieces`` by ``count_piece``; appends each turn boundary
    (``boundaries``) to ``cuts`` and the tokens up to it to ``cut_tokens``.
    ``TokenCounter.count_turns`` is the same, faster."""
    total = 0
    start = 0
    for cut in boundaries(pieces):
        total += sum(1 if piece is SPECIAL else count_piece(piece) for piece in pieces[start:cut])
        cuts.append(cut)
        cut_tokens.append(total)
        start = cut
    return total + sum(1 if piece is SPECIAL else count_piece(piece) for piece in pieces[start:])


def record(stats: RealtimeStats, model: str, tier: str, input_tokens: int, pieces: list[str | None] | None,
           cuts: list[int], cut_tokens: list[int], explicit: set[int] | None, minimums: dict[str, int],
           digests: "PrefixDigests | None" = None) -> None:
    """Record one request from the render that was counted: ``cuts`` are its
    turn boundaries (``boundaries(pieces)``) and ``cut_tokens`` the prompt
    tokens up to each (``TokenCounter.count_turns`` gives both while it
    counts), so no piece is counted or rendered twice. ``digests`` remembers
    the digests of prefixes seen before (one per planner)."""
    s = stats.models.get(model)
    if s is None:
        s = stats.models[model] = ModelStats()
    s.input_tokens[tier] += input_tokens
    s.histogram[histogram_bin(input_tokens)] += 1
    if pieces is None:
        return
    mode = EXPLICIT if explicit else IMPLICIT
    minimum = minimums[mode]
    if mode == IMPLICIT:
        # The last turn is what makes a request its own (the question, the
        # document): only what comes before it is a prefix other requests can
        # share. Recording it too would put one unique prefix per request into
        # the table, past MAX_PREFIXES on large files, and push the shared
        # ones out. An identical repeated request is not counted as a hit of
        # its last turn (conservative; an assumption).
        kept = range(len(cuts) - 1)
    else:
        s.explicit_requests += 1
        # The n-th closed turn is the n-th message (a tools preamble merges
        # into the system turn, so this is approximate with tools; assumption).
        kept = [n for n in range(len(cuts)) if n in explicit]
    # Prefixes below the minimum are not recorded, and need no digest.
    kept = [n for n in kept if cut_tokens[n] >= minimum]
    if not kept:
        return
    keys = (digests or PrefixDigests()).keys(mode, pieces, [cuts[n] for n in kept])
    parent = 0
    prefixes = s.prefixes
    for n, key in zip(kept, keys):
        tokens = cut_tokens[n]
        p = prefixes.get(key)
        if p is None:
            p = prefixes[key] = Prefix(tokens, parent, mode)
        p.uses[tier] += 1
        parent = tokens
    if len(prefixes) > 2 * MAX_PREFIXES:  # trimmed now and then, not per request
        s._bound()


_SPECIAL_MARK = "\x00S\x00"  # a special token in a prefix digest
# PrefixDigests forgets everything past this many characters of remembered
# turns, or this many turns, so its memory stays flat (per planner).
DIGEST_MEMO_CHARS = 4_000_000
DIGEST_MEMO_TURNS = 50_000


class PrefixDigests:
    """The digest of each prefix of a prompt: blake2b of the cache mode, then
    of each piece's UTF-8 (a special token as b"\\0S\\0"), fed a turn at a
    time, so each prefix's digest continues the one before.

    Requests of a file mostly share their first turns (a system prompt, a
    few-shot block), so a whole prefix, or a turn that followed the same
    prefix, seen before is looked up, not hashed again: by its pieces, whose
    hashes Python keeps from when they were counted. The digests are the same
    either way."""

    def __init__(self):
        # (digest before the turn, or the mode; the turn's pieces) -> (digest, running hash),
        # and (mode, cuts, pieces up to the last cut) -> the digest at each cut
        self._memo: dict[tuple, tuple] = {}
        self._chars = 0

    def keys(self, mode: str, pieces: list[str | None], cuts: list[int]) -> tuple[bytes, ...]:
        """The digest of ``pieces[:cut]`` for each cut, in order."""
        memo = self._memo
        # The whole prefix seen before (every request of a shared-prompt
        # file): one look-up instead of one a turn.
        whole = (mode, tuple(cuts), tuple(pieces[:cuts[-1]])) if cuts else None
        found = memo.get(whole)
        if found is not None:
            return found
        out = []
        parent: str | bytes = mode
        running = None
        start = 0
        for cut in cuts:
            turn = tuple(pieces[start:cut])
            start = cut
            found = memo.get((parent, turn))
            if found is None:
                running = running.copy() if running is not None else hashlib.blake2b(mode.encode(), digest_size=16)
                text = "".join([_SPECIAL_MARK if piece is SPECIAL else piece for piece in turn])
                running.update(text.encode("utf-8", "surrogatepass"))
                found = (running.digest(), running)
                if self._chars > DIGEST_MEMO_CHARS or len(memo) >= DIGEST_MEMO_TURNS:
                    memo.clear()
                    self._chars = 0
                memo[(parent, turn)] = found
                self._chars += len(text)
            parent, running = found
            out.append(parent)
        out = tuple(out)
        if whole is not None:
            if self._chars > DIGEST_MEMO_CHARS or len(memo) >= DIGEST_MEMO_TURNS:
                memo.clear()
                self._chars = 0
            memo[whole] = out
            self._chars += sum(len(piece) for piece in whole[2] if piece is not SPECIAL)
        return out


@dataclass(frozen=True)
class CacheTokens:
    """Input tokens of one model x tier, as a cache would bill them."""

    hit: int = 0  # billed at the hit factor of their mode
    created: int = 0  # explicit creation, billed at its creation factor


def cache_tokens(s: ModelStats, assumption: str, block_tokens: int, tier_order: list[str]) -> dict[str, dict[str, CacheTokens]]:
    """Hit and creation tokens per tier per mode, for ``best`` or ``expected``.

    The first use of each prefix is the miss; it is counted against the most
    expensive tier that used it (last in ``tier_order``), so savings are not
    overstated when a prefix spans tiers."""
    rank = {t: i for i, t in enumerate(tier_order)}
    hit: dict[str, Counter] = {IMPLICIT: Counter(), EXPLICIT: Counter()}
    created: Counter = Counter()
    for p in s.prefixes.values():
        new = p.tokens - p.parent_tokens
        if p.mode == IMPLICIT and assumption == "expected":
            new = (p.tokens // block_tokens - p.parent_tokens // block_tokens) * block_tokens
        if new <= 0:
            continue
        first = max(p.uses, key=lambda t: (rank.get(t, -1), t))
        for tier, uses in p.uses.items():
            repeats = uses - 1 if tier == first else uses
            hit[p.mode][tier] += new * repeats
        if p.mode == EXPLICIT:
            created[first] += new
    out: dict[str, dict[str, CacheTokens]] = {}
    for tier in set(hit[IMPLICIT]) | set(hit[EXPLICIT]) | set(created):
        out[tier] = {
            IMPLICIT: CacheTokens(hit[IMPLICIT][tier], 0),
            EXPLICIT: CacheTokens(hit[EXPLICIT][tier], created[tier]),
        }
    return out
