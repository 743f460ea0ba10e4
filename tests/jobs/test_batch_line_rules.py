"""The newest Batch API page's facts about one line: its size (1 MB there,
6 MB on the English page), custom_id (256 characters) and media that must be
public; and which models the Batch API takes at all."""

import json

import pytest

from batchplan.catalog.catalog import default_catalog
from batchplan.jobs.rules import LINE_OVER_NEWEST_LIMIT, LINE_TOO_LARGE, MEDIA_URL_NOT_PUBLIC, check_file
from batchplan.planning.validate import non_public_media_url
from tests.conftest import line

MB = 1024 * 1024


def padded(custom_id, size):
    """A valid qwen-plus line of about ``size`` bytes."""
    text = "x" * size
    return line(custom_id, messages=[{"role": "user", "content": text}])


def image_line(custom_id, url, model="qwen-vl-max"):
    return line(custom_id, model=model, messages=[{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "What is this?"}]}])


def test_a_line_over_the_newest_pages_1_mb_is_a_warning_naming_both_sources(write_batch):
    check = check_file(write_batch([padded("1", int(1.5 * MB)), padded("2", 100)]))
    assert check.ok  # within the English page's 6 MB
    [warning] = check.warnings
    assert (warning.line, warning.rule) == (1, LINE_OVER_NEWEST_LIMIT)
    assert "BATCH-INF-NEWEST" in warning.message and "BATCH (6 MB" in warning.message
    assert check.warning_counts == {LINE_OVER_NEWEST_LIMIT: 1}


def test_a_line_over_6_mb_is_refused_naming_both_sources(write_batch):
    check = check_file(write_batch([padded("1", 7 * MB)]))
    [violation] = [v for v in check.violations if v.rule == LINE_TOO_LARGE]
    assert violation.line == 1
    assert "1 MB" in violation.message and "6 MB" in violation.message and "over both" in violation.message
    assert not [w for w in check.warnings if w.rule == LINE_OVER_NEWEST_LIMIT]


def test_custom_id_at_most_256_characters(write_batch):
    check = check_file(write_batch([line("a" * 256), line("b" * 257)]))
    invalid = [v for v in check.violations if v.rule == "invalid_line"]
    assert [v.line for v in invalid] == [2]
    assert "257 characters" in invalid[0].message and "256" in invalid[0].message
    assert default_catalog().batch_limits.max_custom_id_chars == 256


@pytest.mark.parametrize("url, reason", [
    ("file:///home/me/cat.png", "file:"),
    ("http://localhost:8000/cat.png", "local host"),
    ("http://127.0.0.1/cat.png", "private address"),
    ("https://10.1.2.3/cat.png", "private address"),
    ("http://192.168.0.7/cat.png", "private address"),
    ("http://[::1]/cat.png", "private address"),
    ("http://printer.local/cat.png", "local host"),
    ("/srv/images/cat.png", "local path"),
])
def test_a_media_url_that_is_not_public_is_warned_about(write_batch, url, reason):
    assert reason in non_public_media_url(url)
    check = check_file(write_batch([image_line("1", url)]), region="cn")
    assert [(w.line, w.rule) for w in check.warnings] == [(1, MEDIA_URL_NOT_PUBLIC)]
    assert "never completes" in check.warnings[0].message


@pytest.mark.parametrize("url", ["https://dashscope.oss-cn-beijing.aliyuncs.com/images/dog_and_girl.jpeg",
                                 "http://8.8.8.8/a.png", "data:image/png;base64,iVBORw0KGgo=", "oss://bucket/a.png"])
def test_public_and_inline_media_are_not_warned_about(url):
    assert non_public_media_url(url) is None


def test_compare_warns_about_non_public_media_too(tmp_path):
    from batchplan.planning.planner import plan_file

    path = tmp_path / "b.jsonl"
    path.write_text(image_line("1", "file:///tmp/a.png") + "\n" + image_line("2", "https://example.com/a.png") + "\n")
    warnings = plan_file(str(path), region="cn").plan.warnings
    assert warnings["media_url_not_public"].lines == [1]


def test_validate_prints_warnings_on_stderr_and_stays_valid(run, write_batch):
    path = write_batch([padded("1", int(1.2 * MB))])
    result = run("validate", path)
    assert result.exit_code == 0
    assert f"{path}:1: warning: {LINE_OVER_NEWEST_LIMIT}:" in result.stderr
    document = json.loads(run("validate", "--json", path).stdout)
    assert document["warning_counts"] == {LINE_OVER_NEWEST_LIMIT: 1} and document["ok"] is True


@pytest.mark.parametrize("model, region", [("qwen-mt-plus", "cn"), ("qvq-max", "cn"), ("qwen-max", "cn"),
                                           ("qwen3.6-plus", "intl")])
def test_validate_flags_a_model_the_batch_api_does_not_take(write_batch, model, region):
    check = check_file(write_batch([line("1", model=model, enable_thinking=False)]), region=region)
    assert "model_not_offered" in {v.rule for v in check.violations}


@pytest.mark.parametrize("model", ["qwen3.8-max", "qwen3.7-plus", "qwen3.7-flash", "qwen3.6-flash", "qwen3-vl-plus",
                                   "qwen-vl-ocr", "qwen3.7-text-embedding"])
def test_the_newest_pages_models_are_taken_in_beijing(write_batch, model):
    kind = default_catalog().model(model).kind
    url = "/v1/embeddings" if kind == "embedding" else "/v1/chat/completions"
    body = {"input": "hello"} if kind == "embedding" else {"enable_thinking": False}
    check = check_file(write_batch([line("1", model=model, url=url, **body)]), region="cn")
    assert not {"model_not_offered", "unknown_model"} & {v.rule for v in check.violations}
