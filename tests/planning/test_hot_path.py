"""The fast paths of counting and planning give exactly what the plain ones give."""

import random

import pytest

from batchplan.planning.tokens import TokenCounter, ordinary_length

PIECES = ["\n", "\r\n", " ", "  ", "\t", "\u3000", "\xa0", "a", "The", "'s", "é", "e\u0301", "中", "你好", "。",
          "1", "4567", "#", "!?", "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|extra_3|>", "<|", "|>",
          "😀", "\U0010ffff", "\x00", "\u200b", "ﬁ", "Ⅷ"]


@pytest.fixture(scope="module")
def encoding():
    return TokenCounter().encoding


def test_buffer_length_is_the_length_of_encode_ordinary(encoding):
    length = ordinary_length(encoding)
    # The installed tiktoken has the buffer method, so the fast path is the one tested.
    assert length.__name__ == "by_buffer"
    rng = random.Random(17)
    for _ in range(3000):
        text = "".join(rng.choice(PIECES) for _ in range(rng.randint(0, 60)))
        assert length(text) == len(encoding.encode_ordinary(text)), text
    for _ in range(300):
        text = "".join(chr(rng.randint(1, 0x2FFFF)) for _ in range(rng.randint(1, 200)))
        text = text.encode("utf-8", "replace").decode("utf-8")  # no lone surrogates here
        assert length(text) == len(encoding.encode_ordinary(text)), text


def test_buffer_length_repairs_lone_surrogates_as_encode_ordinary_does(encoding):
    text = "ab\ud800cd"
    assert ordinary_length(encoding)(text) == len(encoding.encode_ordinary(text))


def test_special_token_text_is_still_read_as_the_special_token(encoding):
    counter = TokenCounter(encoding, cache=False)
    assert counter.count_text("<|im_start|>") == 1
    assert ordinary_length(encoding)("<|im_start|>") == len(encoding.encode_ordinary("<|im_start|>")) > 1


class _ListOnly:
    """An encoding without tiktoken's private core: the public method is used."""

    def __init__(self, encoding):
        self.encode_ordinary = encoding.encode_ordinary


def test_without_the_buffer_method_encode_ordinary_is_used(encoding):
    length = ordinary_length(_ListOnly(encoding))
    assert length.__name__ == "by_list"
    assert length("hello 你好") == len(encoding.encode_ordinary("hello 你好"))


# -- plan_lines without rows gives the plan of planning each line on its own --

import copy  # noqa: E402
import json  # noqa: E402
from decimal import Decimal  # noqa: E402

from batchplan.catalog.catalog import Catalog, default_catalog  # noqa: E402
from batchplan.planning.aggregate import Plan  # noqa: E402
from batchplan.planning.output import CALIBRATED, PER_REQUEST, RATIO, OutputAssumption  # noqa: E402
from batchplan.planning.planner import Planner  # noqa: E402
from batchplan.planning.pricing import price_group, price_request  # noqa: E402
from batchplan.planning.reading import Line  # noqa: E402
from batchplan.planning.validate import parse_line  # noqa: E402


def _small_catalog() -> Catalog:
    """The shipped catalog with bounds small enough for short test texts to
    cross tiers and limits, a model past whose last tier nothing is priced,
    one without an output price, and one with no intl price."""
    raw = copy.deepcopy(default_catalog().raw)
    models = raw["models"]
    models["qwen-plus"]["prices"]["intl"]["tiers"] = [
        {"max_input_tokens": 20, "input": "0.4", "output": "1.2", "thinking_output": "4"},
        {"max_input_tokens": 60, "input": "1.2", "output": "3.6", "thinking_output": "12"},
        {"max_input_tokens": None, "input": "2.4", "output": "7.2"},
    ]
    models["qwen-plus"]["limits"].update(max_input=90, max_output=50, max_output_thinking=70, max_reasoning=None)
    models["bounded"] = {"kind": "chat", "thinks_by_default": True, "limits": {"max_output": 40},
                         "prices": {"intl": {"tiers": [{"max_input_tokens": 30, "input": "0.123456", "output": "0.7"}]}}}
    models["no-output-price"] = {"kind": "chat", "limits": {"max_output": 30},
                                 "prices": {"intl": {"tiers": [{"max_input_tokens": None, "input": "0.35"}]}}}
    models["cn-only"] = {"kind": "chat", "limits": {"max_output": 30},
                         "prices": {"cn": {"tiers": [{"max_input_tokens": None, "input": "1", "output": "2"}]}}}
    return Catalog(raw)


MODELS = ["qwen-plus", "qwen-plus", "qwen-plus", "qwen-max", "qwen3-max", "qwq-plus", "bounded", "no-output-price",
          "cn-only", "qwen-plus-2025-01-25", "not-a-model", "qwen3.7-plus", "deepseek-v3"]
WORDS = ["hello", "world", "你好", "世界", "The", "price", "of", "tokens", "\n", "12", "😀", "<|im_end|>", "é"]


def _text(rng, most=40):
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(0, most)))


def _body(rng):
    body = {"model": rng.choice(MODELS)}
    kind = rng.random()
    if kind < 0.08:
        body["model"] = rng.choice(["text-embedding-v4", "text-embedding-v3"])
        body["input"] = _text(rng) if rng.random() < 0.5 else [_text(rng) for _ in range(rng.randint(1, 3))]
        return body
    messages = [{"role": "system", "content": _text(rng, 10)}] if rng.random() < 0.4 else []
    messages.append({"role": "user", "content": _text(rng)})
    if rng.random() < 0.2:
        messages += [{"role": "assistant", "content": _text(rng, 8)}, {"role": "user", "content": _text(rng, 8)}]
    if kind < 0.14:
        messages[-1]["content"] = [{"type": "text", "text": _text(rng)}, {"type": "image_url", "image_url": {"url": "x"}}]
    elif kind < 0.18:
        body["tools"] = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    elif kind < 0.21:
        messages.append({"role": "assistant", "content": _text(rng, 5), "partial": True})
    if rng.random() < 0.5:
        body["max_tokens"] = rng.choice([1, 10, 45, 60, 100])
    if rng.random() < 0.3:
        body["enable_thinking"] = rng.random() < 0.5
    if rng.random() < 0.2:
        body["thinking_budget"] = rng.choice([5, 50])
    if rng.random() < 0.05:
        body["max_completion_tokens"] = 30
    if rng.random() < 0.1:
        body["response_format"] = {"type": rng.choice(["json_object", "text"])}
    body["messages"] = messages
    return body


BAD = [
    b"{not json", b"[1, 2]", b'"text"', "\u00e9".encode("latin-1"),
    b'{"method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}]}}',
    b'{"custom_id": "", "method": "POST", "url": "/v1/chat/completions", "body": {}}',
    b'{"custom_id": "a", "method": "GET", "url": "/v1/chat/completions", "body": {}}',
    b'{"custom_id": "a", "method": "POST", "url": "/v2", "body": {}}',
    b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": []}',
    b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "messages": []}}',
    b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "messages": [{"role": ["user"], "content": "x"}]}}',
    b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "max_tokens": 0, "messages": [{"role": "user", "content": "x"}]}}',
    b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "enable_thinking": 1, "messages": [{"role": "user", "content": "x"}]}}',
    b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "messages": [{"role": "user", "content": 5}]}}',
    b'{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "tools": {}, "messages": [{"role": "user", "content": "x"}]}}',
    b'{"custom_id": 7, "method": "POST", "url": "/v1/chat/completions", "body": {"model": "qwen-plus", "messages": [{"role": "user", "content": "x"}]}}',
]


def _lines(rng, count):
    out = []
    for number in range(1, count + 1):
        if rng.random() < 0.06:
            raw = rng.choice(BAD)
        else:
            url = "/v1/embeddings" if "input" in (body := _body(rng)) else rng.choice(["/v1/chat/completions"] * 9 + ["/v1/chat/ds-test"])
            raw = json.dumps({"custom_id": f"r{number}", "method": "POST", "url": url, "body": body}, ensure_ascii=rng.random() < 0.5).encode()
        out.append(Line(number, raw))
    return out


def _by_rows(planner, lines, file=None):
    """The plan as plan_lines makes it when every row is asked for."""
    rows = []
    plan = planner.plan_lines(lines, file, rows.append)
    assert len(rows) == len(lines)
    return plan


def _same(fast: Plan, slow: Plan) -> None:
    assert fast == slow
    # The same order too, where the report shows it.
    assert list(fast.rows) == list(slow.rows)
    assert list(fast.models) == list(slow.models) and list(fast.urls) == list(slow.urls)
    assert list(fast.thinking_modes) == list(slow.thinking_modes) and list(fast.warnings) == list(slow.warnings)


ASSUMPTIONS = [
    OutputAssumption(),
    OutputAssumption(PER_REQUEST, tokens=25),
    OutputAssumption(PER_REQUEST, tokens=0),
    OutputAssumption(RATIO, ratio=Decimal("0.37")),
    OutputAssumption(CALIBRATED, per_model={"qwen-plus": 33, "bounded": 3}, source="test"),
]


@pytest.mark.parametrize("assumption", ASSUMPTIONS, ids=lambda a: a.mode + str(a.tokens or ""))
@pytest.mark.parametrize("region", ["intl", "cn"])
def test_plan_without_rows_equals_the_plan_with_rows(encoding, assumption, region):
    rng = random.Random(f"{assumption.mode}-{assumption.tokens}-{region}")  # the same data on every run
    lines = _lines(rng, 1500)
    catalog = _small_catalog()
    fast = Planner(catalog, region, assumption, TokenCounter(encoding)).plan_lines(lines, "f.jsonl")
    slow = _by_rows(Planner(catalog, region, assumption, TokenCounter(encoding)), lines, "f.jsonl")
    _same(fast, slow)
    # The sample covers what it is meant to: several tiers, unpriced and priced rows, errors, warnings.
    assert fast.invalid > 40
    assert set(fast.warnings) == {"unpriced", "over_max_input", "max_tokens_over_max_output", "thinking_by_default",
                                  "media_not_counted", "approximate_count", "image_size_assumed"}
    assert len({key[1] for key in fast.rows}) >= 3
    assert any(r.realtime_cost is None for r in fast.rows.values())
    assert any(r.realtime_cost for r in fast.rows.values())


def test_plan_without_rows_on_the_shipped_catalog_and_merged(encoding):
    rng = random.Random(99)
    lines = _lines(rng, 1200)
    planner = Planner(counter=TokenCounter(encoding))
    parts = [planner.plan_lines(lines[i:i + 300]) for i in range(0, 1200, 300)]
    merged = parts[0].merge(parts[1]).merge(parts[2]).merge(parts[3])
    slow = _by_rows(Planner(counter=TokenCounter(encoding)), lines)
    assert merged == slow
    _same(planner.plan_lines(lines), slow)


def test_plain_chat_bodies_are_exactly_the_lines_parse_line_accepts(encoding):
    """A body the fast check accepts is one parse_line accepts, with the same body."""
    import orjson

    from batchplan.planning.validate import Request, plain_chat_body

    rng = random.Random(5)
    accepted = 0
    for line in _lines(rng, 3000):
        try:
            doc = orjson.loads(line.raw)
        except orjson.JSONDecodeError:
            continue
        body = plain_chat_body(doc)
        if body is not None:
            accepted += 1
            request = parse_line(line)
            assert isinstance(request, Request) and request.body == body and request.url == "/v1/chat/completions"
    assert accepted > 1500


def test_price_per_group_equals_the_sum_of_prices_per_request():
    rng = random.Random(23)
    catalog = _small_catalog()
    factor = catalog.batch_limits.batch_price_factor
    names = ["qwen-plus", "qwen3-max", "qwen-max", "bounded", "qwen-flash", "text-embedding-v4"]
    for _ in range(200):
        name = rng.choice(names)
        model = catalog.model(name)
        thinking = rng.random() < 0.5
        groups: dict = {}
        for _ in range(rng.randint(1, 400)):
            tokens_in = rng.choice([rng.randint(0, 80), rng.randint(0, 300_000), rng.randint(0, 10**6)])
            tokens_out = 0 if model.kind == "embedding" else rng.randint(0, 70_000)
            price = price_request(model, name, "intl", tokens_in, tokens_out, thinking, factor)
            if price.realtime_cost is None:
                continue
            group = groups.setdefault(price.tier, [0, 0, Decimal(0), Decimal(0), model.price("intl").tier_for(tokens_in)])
            group[0] += tokens_in
            group[1] += tokens_out
            group[2] += price.realtime_cost
            group[3] += price.batch_cost
        for tokens_in, tokens_out, realtime, batch, tier in groups.values():
            assert price_group(tier, thinking, tokens_in, tokens_out, factor) == (realtime, batch)


def test_a_planner_whose_region_changes_prices_by_the_new_region(encoding):
    lines = _lines(random.Random(8), 200)
    planner = Planner(_small_catalog(), "intl", counter=TokenCounter(encoding))
    intl = planner.plan_lines(lines)
    planner.region = "cn"
    cn = planner.plan_lines(lines)
    assert cn == Planner(_small_catalog(), "cn", counter=TokenCounter(encoding)).plan_lines(lines)
    assert cn.rows != intl.rows  # cn prices and tiers differ


def test_a_null_response_format_is_planned_as_absent(encoding):
    line = b'{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"qwen-plus","response_format":null,"messages":[{"role":"user","content":"hi"}]}}'
    without = line.replace(b'"response_format":null,', b"")
    for rows in (None, []):
        plans = [Planner(counter=TokenCounter(encoding)).plan_lines([Line(1, raw)], None, None if rows is None else rows.append)
                 for raw in (line, without)]
        assert plans[0] == plans[1] and plans[0].invalid == 0
