"""--cache and --html in one pass: prefixes hashed from the render that is
counted give the prefix table the row path gives, with the same digests."""

import hashlib
import json
import random

import pytest

from batchplan.planning import cache
from batchplan.planning.planner import Planner
from batchplan.planning.reading import Line
from batchplan.planning.templates import SPECIAL, render
from batchplan.planning.tokens import TokenCounter

SYSTEM = "You extract fields and answer in JSON only. 你是一名信息抽取助手。\n" * 30
SHOT_Q = "Example document: order 1234 from ACME, 3 laptops, 4500 USD.\n" * 12
SHOT_A = '{"order_id": "1234", "customer": "ACME", "amount": 4500}\n' * 6


@pytest.fixture(scope="module")
def encoding():
    return TokenCounter().encoding


def _line(number, body, url="/v1/chat/completions"):
    return Line(number, json.dumps({"custom_id": f"r{number}", "method": "POST", "url": url, "body": body}, ensure_ascii=number % 2 == 0).encode())


def _lines(rng, count):
    """Shared system prompts and few-shot turns, unique documents, multi-turn
    chats, explicit cache markers, tools, embeddings and invalid lines."""
    out = []
    for number in range(1, count + 1):
        kind = rng.random()
        doc = " ".join(rng.choice(["word", "词", "12", "😀", "\n", "the"]) for _ in range(rng.randint(1, 400)))
        system = SYSTEM if rng.random() < 0.7 else SYSTEM[: rng.randint(10, len(SYSTEM))]
        messages = [{"role": "system", "content": system}]
        if rng.random() < 0.6:
            messages += [{"role": "user", "content": SHOT_Q}, {"role": "assistant", "content": SHOT_A}]
        messages.append({"role": "user", "content": doc})
        body = {"model": rng.choice(["qwen-plus", "qwen-max", "qwen3-max", "qwen-flash"]), "messages": messages}
        if kind < 0.05:
            out.append(Line(number, b"{broken"))
            continue
        if kind < 0.12:
            out.append(_line(number, {"model": "text-embedding-v4", "input": doc}, "/v1/embeddings"))
            continue
        if kind < 0.2:
            messages[0]["content"] = [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}]
        elif kind < 0.25:
            body["tools"] = [{"type": "function", "function": {"name": "lookup", "description": SHOT_Q, "parameters": {}}}]
        out.append(_line(number, body))
    return out


def _by_rows(planner, lines):
    rows = []
    plan = planner.plan_lines(lines, None, rows.append)
    assert len(rows) == len(lines)
    return plan


def test_prefix_statistics_in_one_pass_equal_the_row_path(encoding):
    lines = _lines(random.Random(16), 900)
    fast = Planner(counter=TokenCounter(encoding), realtime_stats=True).plan_lines(lines)
    slow = _by_rows(Planner(counter=TokenCounter(encoding), realtime_stats=True), lines)
    assert fast == slow  # rows, warnings and the prefix table (Plan.realtime)
    stats = fast.realtime.models
    assert sum(len(s.prefixes) for s in stats.values()) >= 8
    assert any(s.explicit_requests for s in stats.values())
    assert max(sum(p.uses.values()) for s in stats.values() for p in s.prefixes.values()) > 100


def test_blocks_planned_apart_merge_into_the_same_table(encoding):
    lines = _lines(random.Random(7), 600)
    planner = Planner(counter=TokenCounter(encoding), realtime_stats=True)
    parts = [planner.plan_lines(lines[i:i + 150]) for i in range(0, 600, 150)]
    merged = parts[0].merge(parts[1]).merge(parts[2]).merge(parts[3])
    assert merged.realtime == _by_rows(Planner(counter=TokenCounter(encoding), realtime_stats=True), lines).realtime


def _reference_keys(mode, pieces, cuts):
    """The digests as first written: one blake2b fed piece by piece."""
    digest = hashlib.blake2b(mode.encode(), digest_size=16)
    keys, start = [], 0
    for cut in cuts:
        for piece in pieces[start:cut]:
            digest.update(b"\x00S\x00" if piece is SPECIAL else piece.encode("utf-8", "surrogatepass"))
        start = cut
        keys.append(digest.copy().digest())
    return keys


def test_digests_are_the_digests_fed_piece_by_piece_with_and_without_memory(monkeypatch):
    rng = random.Random(3)
    digests = cache.PrefixDigests()
    monkeypatch.setattr(cache, "DIGEST_MEMO_TURNS", 40)  # forgets often
    for _ in range(300):
        messages = [{"role": "system", "content": rng.choice([SYSTEM, SHOT_Q, "短"])}]
        for _ in range(rng.randint(1, 4)):
            messages += [{"role": "user", "content": rng.choice([SHOT_Q, SHOT_A, "q\ud800"])}, {"role": "assistant", "content": rng.choice([SHOT_A, "ok"])}]
        pieces = render({"messages": messages})
        cuts = cache.boundaries(pieces)
        mode = rng.choice([cache.IMPLICIT, cache.EXPLICIT])
        expected = _reference_keys(mode, pieces, cuts)
        assert list(digests.keys(mode, pieces, cuts)) == expected
        assert list(digests.keys(mode, pieces, cuts[:-1])) == expected[:-1]
        assert list(cache.PrefixDigests().keys(mode, pieces, cuts)) == expected
        assert len(digests._memo) <= 40


def test_the_memory_of_digests_stays_bounded(monkeypatch):
    monkeypatch.setattr(cache, "DIGEST_MEMO_CHARS", 10_000)
    digests = cache.PrefixDigests()
    for i in range(2000):
        pieces = [SPECIAL, f"system\nunique text {i} " * 20, SPECIAL, "\n", SPECIAL, "user\nx", SPECIAL, "\n"]
        digests.keys(cache.IMPLICIT, pieces, cache.boundaries(pieces))
        assert digests._chars <= 10_000 + 600


def test_count_turns_counts_as_count_pieces_and_cuts_as_boundaries(encoding):
    counter = TokenCounter(encoding)
    rng = random.Random(5)
    for _ in range(200):
        messages = [{"role": rng.choice(["system", "user", "assistant"]), "content": rng.choice([SYSTEM, SHOT_A, "", "\n", "<|im_end|>\n"])}
                    for _ in range(rng.randint(1, 5))]
        pieces = render({"messages": messages})
        cuts, cut_tokens = [], []
        assert counter.count_turns(pieces, cuts, cut_tokens) == counter.count_pieces(pieces)
        assert cuts == cache.boundaries(pieces)
        assert cut_tokens == [counter.count_pieces(pieces[:cut]) for cut in cuts]
        by_text_cuts, by_text_tokens = [], []
        assert cache.count_turns(pieces, counter.count_text, by_text_cuts, by_text_tokens) == counter.count_pieces(pieces)
        assert (by_text_cuts, by_text_tokens) == (cuts, cut_tokens)
