"""Prompt tokens must equal what DashScope bills (facts §3)."""

import json

import pytest

from batchplan import count_prompt_tokens
from batchplan.planning.templates import QWEN25_DEFAULT_SYSTEM, TOOLS_INTRO, TOOLS_OUTRO
from batchplan.planning.tokens import LONG_TEXT, TokenCounter
from tests.conftest import FIXTURES

GROUNDTRUTH = [json.loads(l) for l in (FIXTURES / "groundtruth_public.jsonl").read_text("utf-8").splitlines() if l.strip()]


@pytest.fixture(scope="module")
def counter():
    return TokenCounter()


def test_seed_examples(counter):
    assert counter.count_text("你好,我是通义千问") == 7
    assert counter.count_text("Nice to meet you.") == 5


def test_special_token_ids(counter):
    assert counter.encoding.encode("<|im_start|><|im_end|>", allowed_special="all") == [151644, 151645]


# Rows recorded before their model moved to Qwen3 (qwen-turbo did on
# 2025-04-28): they are billed as the dated snapshot of that time was, a
# Qwen2.5 one, without the empty think block today's qwen-turbo bills
# (tests/planning/test_recorded_families.py).
RECORDED_BEFORE_QWEN3 = {
    "gt-1": "qwen-turbo-2024-11-01",  # committed 2024-10-28 (R10836/CSU-CS_DS-Assignments@b303b20)
    "gt-22": "qwen-turbo-2024-11-01",  # LangChain's docs/docs notebook, before that folder left the repo in 2025 (date not confirmed)
}


@pytest.mark.parametrize("case", GROUNDTRUTH, ids=[c["id"] for c in GROUNDTRUTH])
def test_every_public_real_case_matches_exactly(case):
    body = dict(case["body"], model=RECORDED_BEFORE_QWEN3.get(case["id"], case["body"]["model"]))
    assert count_prompt_tokens(body) == case["reported_prompt_tokens"]


def test_chat_is_content_plus_five_per_message_plus_three(counter):
    body = {"model": "qwen-plus", "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "你是谁？"},
    ]}
    content = counter.count_text("You are a helpful assistant.") + counter.count_text("你是谁？")
    assert count_prompt_tokens(body) == content + 2 * 5 + 3 == 22


def test_no_default_system_prompt():
    assert count_prompt_tokens({"model": "qwen-plus", "messages": [{"role": "user", "content": "你是谁？"}]}) == 11


def test_content_parts_count_their_text_and_cache_control_adds_nothing():
    plain = {"model": "qwen-plus", "messages": [{"role": "user", "content": "Nice to meet you."}]}
    parts = {"model": "qwen-plus", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "Nice to meet you.", "cache_control": {"type": "ephemeral"}}]}]}
    assert count_prompt_tokens(parts) == count_prompt_tokens(plain) == 5 + 5 + 3


def test_json_object_adds_two():
    body = {"model": "qwen-max", "messages": [{"role": "user", "content": "hi"}]}
    json_mode = dict(body, response_format={"type": "json_object"})
    assert count_prompt_tokens(json_mode) == count_prompt_tokens(body) + 2


def test_partial_assistant_has_no_closing_tokens_and_no_header(counter):
    body = {"model": "qwen-plus", "messages": [
        {"role": "user", "content": "Write a haiku."},
        {"role": "assistant", "content": "Autumn moon", "partial": True},
    ]}
    expected = (counter.count_text("user\nWrite a haiku.") + 3) + (1 + counter.count_text("assistant\nAutumn moon"))
    assert count_prompt_tokens(body) == expected
    not_partial = {"model": "qwen-plus", "messages": body["messages"][:1] + [{"role": "assistant", "content": "Autumn moon"}]}
    assert count_prompt_tokens(not_partial) == expected + 2 + 3  # <|im_end|>\n then the generation header


def test_embedding_counts_text_alone(counter):
    body = {"model": "text-embedding-v4", "input": ["Nice to meet you.", "你好,我是通义千问"]}
    assert count_prompt_tokens(body, url="/v1/embeddings") == 12
    assert count_prompt_tokens({"model": "text-embedding-v4", "input": "Nice to meet you."}, url="/v1/embeddings") == 5


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "天气", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def _hand_rendered(counter, text):
    return len(counter.encoding.encode(text, allowed_special="all"))


def test_tools_qwen25_template_has_default_system(counter):
    body = {"model": "qwen-max", "messages": [{"role": "user", "content": "北京天气？"}], "tools": [WEATHER]}
    text = ("<|im_start|>system\n" + QWEN25_DEFAULT_SYSTEM + "\n\n" + TOOLS_INTRO + "\n" + json.dumps(WEATHER, ensure_ascii=False)
            + TOOLS_OUTRO + "<|im_end|>\n<|im_start|>user\n北京天气？<|im_end|>\n<|im_start|>assistant\n")
    assert count_prompt_tokens(body) == _hand_rendered(counter, text)


def test_tools_qwen3_template_has_no_default_system(counter):
    # qwen-flash and qwen-turbo are counted with the tags as single tokens
    # (test_recorded_families.py); qwen-plus and qwen3-max keep them as text.
    for model in ("qwen-plus", "qwen3-max"):
        body = {"model": model, "messages": [{"role": "user", "content": "北京天气？"}], "tools": [WEATHER]}
        text = ("<|im_start|>system\n" + TOOLS_INTRO + "\n" + json.dumps(WEATHER, ensure_ascii=False)
                + TOOLS_OUTRO + "<|im_end|>\n<|im_start|>user\n北京天气？<|im_end|>\n<|im_start|>assistant\n")
        assert count_prompt_tokens(body) == _hand_rendered(counter, text), model


def test_template_family_follows_the_model_name():
    def count(model):
        return count_prompt_tokens({"model": model, "messages": [{"role": "user", "content": "北京天气？"}], "tools": [WEATHER]})

    assert count("qwen2.5-72b-instruct") == count("qwen-max") == count("qwen-max-2025-01-25")
    assert count("qwen3-235b-a22b") == count("qwen-plus")
    # qwen-flash bills the <tool_call> and </tool_call> of the instructions as one token each.
    assert count("qwen-flash") < count("qwen-plus")
    assert count("qwen-max") > count("qwen-plus")  # the Qwen2.5 default system text


def test_tools_qwen3_system_and_tool_calls_and_merged_tool_responses(counter):
    call = {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"北京\"}"}}
    body = {"model": "qwen-plus", "tools": [WEATHER], "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "北京和上海天气？"},
        {"role": "assistant", "content": "", "tool_calls": [call, call]},
        {"role": "tool", "content": "晴"},
        {"role": "tool", "content": "雨"},
    ]}
    tool_call = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京"}}\n</tool_call>'
    text = ("<|im_start|>system\nBe brief.\n\n" + TOOLS_INTRO + "\n" + json.dumps(WEATHER, ensure_ascii=False) + TOOLS_OUTRO + "<|im_end|>\n"
            "<|im_start|>user\n北京和上海天气？<|im_end|>\n"
            "<|im_start|>assistant\n" + tool_call + "\n" + tool_call + "<|im_end|>\n"
            "<|im_start|>user\n<tool_response>\n晴\n</tool_response>\n<tool_response>\n雨\n</tool_response><|im_end|>\n"
            "<|im_start|>assistant\n")
    assert count_prompt_tokens(body) == _hand_rendered(counter, text)


def test_nfc_normalisation(counter):
    decomposed = "Cafe\u0301"  # e + combining acute
    assert counter.count_text(decomposed) == counter.count_text("Caf\u00e9")


def test_cache_gives_the_same_counts_as_a_fresh_counter():
    warm = TokenCounter()
    texts = ["shared system prompt " * 50, "unique 1", "shared system prompt " * 50, "unique 2"]
    first = [warm.count_text(t) for t in texts]
    assert [TokenCounter(warm.encoding).count_text(t) for t in texts] == first
    assert [warm.count_text(t) for t in texts] == first


def test_long_text_split_keeps_the_count(counter):
    paragraph = "The quick brown fox jumps over the lazy dog. 敏捷的棕色狐狸跳过了懒狗。\n"
    text = paragraph * (LONG_TEXT // len(paragraph) * 3)
    assert len(text) > LONG_TEXT
    whole = len(counter.encoding.encode_ordinary(text))
    assert TokenCounter(counter.encoding).count_text(text) == whole
