"""The tokenizer engines: fastokens counts exactly what tiktoken counts, and
the engine is chosen as documented (BATCHPLAN_TOKENIZER, input size,
tiktoken whenever fastokens is missing)."""

import glob
import json
import os
import random
import subprocess
import sys
import unicodedata

import pytest

from batchplan.errors import BatchplanError
from batchplan.planning import tokens
from batchplan.planning.planner import Planner, plan_files
from batchplan.planning.templates import SPECIAL, render
from batchplan.planning.tokens import (
    ENGINE_VARIABLE,
    FASTOKENS,
    TIKTOKEN,
    EngineError,
    TokenCounter,
    choose_engine,
    load_fastokens,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def encoding():
    return TokenCounter(engine=TIKTOKEN).encoding


@pytest.fixture(scope="module")
def fast():
    pytest.importorskip("fastokens")
    return load_fastokens()


def _tiktoken_count(encoding, text):
    return len(encoding.encode(text, allowed_special="all")) if "<|" in text else len(encoding.encode_ordinary(text))


def _fast_count(engine, text):
    return engine.count_special(text) if "<|" in text else engine.count(text)


def test_probe_counts_are_tiktokens(encoding):
    for text, ordinary, special in tokens._ENGINE_PROBES:
        assert len(encoding.encode_ordinary(text)) == ordinary
        assert len(encoding.encode(text, allowed_special="all")) == special


def _bodies(value):
    if isinstance(value, dict):
        if isinstance(value.get("messages"), list) or ("input" in value and "model" in value):
            yield value
        else:
            for item in value.values():
                yield from _bodies(item)
    elif isinstance(value, list):
        for item in value:
            yield from _bodies(item)


def _fixture_pieces():
    """Every text piece batchplan counts in the samples and test fixtures, per request."""
    paths = sorted(glob.glob(os.path.join(ROOT, "samples", "*.jsonl")) + glob.glob(os.path.join(ROOT, "tests", "fixtures", "**", "*.json*"), recursive=True))
    requests = []
    for path in paths:
        with open(path, encoding="utf-8-sig") as handle:
            docs = [json.loads(line) for line in handle if line.strip().startswith("{")] if path.endswith(".jsonl") else [json.load(handle)]
        for doc in docs:
            for body in _bodies(doc):
                if "messages" in body:
                    try:
                        pieces = [p for family in ("qwen3", "qwen2.5") for p in render(body, family) if p is not SPECIAL]
                    except Exception:  # an invalid line of a fixture: not counted by batchplan either
                        continue
                else:
                    pieces = [body["input"]] if isinstance(body["input"], str) else [t for t in body["input"] if isinstance(t, str)]
                requests.append([unicodedata.normalize("NFC", p) for p in pieces])
    return requests


def test_fastokens_counts_every_fixture_and_sample_as_tiktoken(encoding, fast):
    requests = _fixture_pieces()
    assert len(requests) > 40
    for pieces in requests:
        assert [_fast_count(fast, p) for p in pieces] == [_tiktoken_count(encoding, p) for p in pieces]


def test_fastokens_counts_random_text_as_tiktoken(encoding, fast):
    rng = random.Random(16)
    alphabet = (list(" \t\n\r\u3000\xa0\u2028\u0085\u200b'’sSdlLmtvre.,!?-_/\\\"#$%&*()[]{}<>|~+=:;0123456789abcXYZ")
                + list("éüßøЖΩ中文日本語한국어ไทยहिन्दीעבריתعربي😀👍🏽\u200d❤️🇨🇳\u0301\u20e3\ufe0fſ\u212a"))
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) if rng.random() < 0.9 else chr(rng.randint(0x20, 0x2FFFF))
                       for _ in range(rng.choice([1, 2, 5, 30, 300])))
        text = unicodedata.normalize("NFC", text.encode("utf-8", "replace").decode("utf-8"))
        assert fast.count(text) == len(encoding.encode_ordinary(text)), repr(text)


@pytest.mark.parametrize("text", ["a\ud800b", "\udfff", "x\ud83dy 😀", "<|im_start|>\ud800"])
def test_fastokens_repairs_lone_surrogates_as_tiktoken_does(encoding, fast, text):
    assert fast.count(text) == len(encoding.encode_ordinary(text))
    assert fast.count_special(text) == len(encoding.encode(text, allowed_special="all"))


@pytest.mark.parametrize("text", ["<|im_start|>user\nhi<|im_end|>", "a<|endoftext|>b", "<|extra_204|><|extra_3|>",
                                  "<|object_ref_start|>", "<|im_start", "<|fake|>", "<|<|im_end|>|>"])
def test_special_token_text_reads_as_the_special_token_in_both(encoding, fast, text):
    assert fast.count_special(text) == len(encoding.encode(text, allowed_special="all"))
    assert fast.count(text) == len(encoding.encode_ordinary(text))


def test_a_fastokens_counter_counts_long_and_shared_texts_as_a_tiktoken_counter(encoding, fast):
    head = "Instructions: extract the fields.\n" * 40
    texts = [head + f"document {i}\n" + "x y z\n" * (i * 50) for i in range(6)] + ["a" * 250_000, ("line\n" * 30_000)]
    by_fast = TokenCounter(engine=fast)
    by_tiktoken = TokenCounter(encoding)
    assert [by_fast.count_text(t) for t in texts] == [by_tiktoken.count_text(t) for t in texts]
    assert by_fast.engine_name() == FASTOKENS and by_tiktoken.engine_name() == TIKTOKEN


def test_plans_are_the_same_with_either_engine(tmp_path, encoding, fast):
    path = tmp_path / "mixed.jsonl"
    with open(os.path.join(ROOT, "samples", "chat_shared_system.jsonl"), "rb") as a, open(os.path.join(ROOT, "samples", "extraction_tools.jsonl"), "rb") as b:
        path.write_bytes(a.read() + b.read())
    one = plan_files([str(path)], workers=1, planner=Planner(counter=TokenCounter(engine=fast)))
    two = plan_files([str(path)], workers=1, planner=Planner(counter=TokenCounter(encoding)))
    assert one.plan == two.plan and one.plan.requests > 10


# -- choosing the engine ------------------------------------------------------

def test_auto_takes_fastokens_for_large_inputs_only(monkeypatch):
    pytest.importorskip("fastokens")
    monkeypatch.delenv(ENGINE_VARIABLE, raising=False)
    assert choose_engine(None) == TIKTOKEN
    assert choose_engine(tokens.FAST_ENGINE_MIN_BYTES - 1) == TIKTOKEN
    assert choose_engine(tokens.FAST_ENGINE_MIN_BYTES) == FASTOKENS
    # Workers share the saving, not the load: the bar rises with them.
    assert choose_engine(2 * tokens.FAST_ENGINE_MIN_BYTES - 1, processes=2) == TIKTOKEN
    assert choose_engine(2 * tokens.FAST_ENGINE_MIN_BYTES, processes=2) == FASTOKENS


def test_auto_takes_tiktoken_when_fastokens_is_missing(monkeypatch):
    monkeypatch.delenv(ENGINE_VARIABLE, raising=False)
    monkeypatch.setitem(sys.modules, "fastokens", None)  # as if not installed
    assert choose_engine(10**12) == TIKTOKEN
    monkeypatch.setenv(ENGINE_VARIABLE, "fastokens")
    with pytest.raises(EngineError, match="not installed"):
        load_fastokens()


@pytest.mark.parametrize("value, expected", [("tiktoken", TIKTOKEN), (" TikToken ", TIKTOKEN), ("fastokens", FASTOKENS), ("", TIKTOKEN), ("auto", TIKTOKEN)])
def test_the_variable_chooses_for_every_size(monkeypatch, value, expected):
    monkeypatch.setenv(ENGINE_VARIABLE, value)
    assert choose_engine(None) == expected
    if value.strip() in ("tiktoken", "fastokens"):
        assert choose_engine(10**12) == expected


def test_an_unknown_engine_is_a_one_line_error(monkeypatch):
    monkeypatch.setenv(ENGINE_VARIABLE, "sentencepiece")
    with pytest.raises(EngineError) as caught:
        choose_engine(None)
    assert isinstance(caught.value, BatchplanError)
    assert "BATCHPLAN_TOKENIZER='sentencepiece'" in str(caught.value)


def test_the_command_line_says_which_engine_is_unknown(tmp_path):
    env = dict(os.environ, **{ENGINE_VARIABLE: "nope"})
    done = subprocess.run([sys.executable, "-m", "batchplan", "compare", os.path.join(ROOT, "samples", "embeddings.jsonl")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].startswith("batchplan: error: BATCHPLAN_TOKENIZER='nope'")
    assert "Traceback" not in done.stderr


def test_plan_files_chooses_by_the_input_size(tmp_path, monkeypatch):
    pytest.importorskip("fastokens")
    monkeypatch.delenv(ENGINE_VARIABLE, raising=False)
    path = os.path.join(ROOT, "samples", "chat_shared_system.jsonl")
    small = Planner()
    plan_files([path], workers=1, planner=small)
    assert small.counter.engine.name == TIKTOKEN
    monkeypatch.setattr(tokens, "FAST_ENGINE_MIN_BYTES", os.path.getsize(path))
    large = Planner()
    result = plan_files([path], workers=1, planner=large)
    assert large.counter.engine.name == FASTOKENS
    assert result.plan == plan_files([path], workers=1, planner=Planner(counter=TokenCounter(engine=TIKTOKEN))).plan


def test_a_fastokens_that_counts_differently_is_not_used(monkeypatch, fast):
    monkeypatch.setattr(tokens, "_ENGINE_PROBES", (("hello", 2, 2),))  # "hello" is one token
    with pytest.raises(EngineError, match="counts differently"):
        load_fastokens()
    monkeypatch.setenv(ENGINE_VARIABLE, "auto")
    monkeypatch.setattr(tokens, "_SHARED_ENGINES", {})
    assert tokens.shared_engine(FASTOKENS).name == TIKTOKEN


def test_fastokens_counts_in_the_calling_thread_unless_the_user_says_otherwise(monkeypatch):
    # Its own BPE threads only add memory and CPU beside batchplan's worker processes.
    pytest.importorskip("fastokens")
    from batchplan.planning.tokens import load_fastokens

    monkeypatch.delenv("FASTOKENS_BPE_THREADS", raising=False)
    load_fastokens()
    assert os.environ["FASTOKENS_BPE_THREADS"] == "1"
    monkeypatch.setenv("FASTOKENS_BPE_THREADS", "3")
    load_fastokens()
    assert os.environ["FASTOKENS_BPE_THREADS"] == "3"
