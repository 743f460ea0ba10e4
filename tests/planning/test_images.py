"""Image parts are counted as DashScope documents (help.aliyun.com/zh/model-studio/vision,
"图像Token换算"): sides rounded to the patch, area kept within 4..1280 patches
(16384 with vl_high_resolution_images), one token a patch, plus 2 vision marks."""

import base64
import io
import json

import pytest
from PIL import Image

from batchplan import count_prompt_tokens
from batchplan.catalog.catalog import default_catalog
from batchplan.planning.images import (
    ImageAssumption,
    ImageError,
    VisionRule,
    count_images,
    data_url_size,
    grid_tokens,
    image_tokens,
    parse_image_size,
    resized,
)
from batchplan.planning.tokens import TokenCounter
from tests.conftest import FIXTURES, line, modules_imported

R28 = VisionRule(patch=28)
R32 = VisionRule(patch=32)


# -- the rule, by hand ---------------------------------------------------------

def test_exact_multiples_are_kept():
    assert resized(560, 280, R28) == (560, 280)
    assert grid_tokens(560, 280, R28) == 20 * 10
    assert image_tokens(560, 280, R28) == 200 + 2  # <|vision_start|> and <|vision_end|>
    assert grid_tokens(640, 480, R32) == 20 * 15


def test_sides_round_to_the_nearest_patch():
    # 300/28 = 10.71 -> 11 patches a side.
    assert resized(300, 300, R28) == (308, 308)
    assert grid_tokens(300, 300, R28) == 121
    # Python's round, as in the documented code: 70/28 = 2.5 -> 2, 98/28 = 3.5 -> 4.
    assert resized(70, 98, R28) == (56, 112)


def test_below_the_minimum_is_scaled_up_to_four_tokens_or_so():
    # 30x15 rounds to 28x28 = 1 patch < 4: beta = sqrt(3136 / 450) = 2.64;
    # ceil(15 * 2.64 / 28) = 2 and ceil(30 * 2.64 / 28) = 3 patches.
    assert resized(30, 15, R28) == (84, 56)
    assert grid_tokens(30, 15, R28) == 6
    assert grid_tokens(1, 1, R28) == 4


def test_above_the_maximum_is_scaled_down():
    # 4000x3000 rounds to 4004x2996 = 15301 patches > 1280: beta = sqrt(12e6 / 1003520) = 3.458;
    # floor(3000 / 3.458 / 28) = 30 and floor(4000 / 3.458 / 28) = 41 patches.
    assert resized(4000, 3000, R28) == (41 * 28, 30 * 28)
    assert grid_tokens(4000, 3000, R28) == 1230
    # 1024x1024: 37x37 = 1369 patches of 28 is over the cap, 32x32 patches of 32 is not.
    assert grid_tokens(1024, 1024, R28) == 35 * 35
    assert grid_tokens(1024, 1024, R32) == 1024


def test_high_resolution_raises_the_cap_to_16384():
    assert grid_tokens(4000, 3000, R28, high_resolution=True) == 143 * 107
    assert grid_tokens(8000, 8000, R28, high_resolution=True) <= 16384
    assert grid_tokens(8000, 8000, R28, high_resolution=True) > 16384 * 0.95


def test_a_side_never_goes_below_one_patch():
    w, h = resized(20, 200_000, R28)
    assert w >= 28 and h >= 28


def test_catalog_rules_with_sources():
    catalog = default_catalog()
    for name in ("qwen-vl-max", "qwen-vl-plus"):
        model = catalog.model(name)
        # The aliases at 28 pixels, as the qwen-vl-plus records bill them (test_recorded_families.py).
        assert model.vision.patch == 28 and model.vision.min_tokens == 4
        assert model.vision.max_tokens == 1280 and model.vision.max_tokens_high_resolution == 16384
        assert catalog.raw["models"][name]["vision"]["source"] in catalog.raw["sources"]
    # Dated Qwen2.5-VL snapshots keep 28x28 pixels a token; from the documented date on, 32x32.
    assert catalog.model("qwen-vl-max").vision.for_model("qwen-vl-max-2025-04-08").patch == 28
    assert catalog.model("qwen-vl-max").vision.for_model("qwen-vl-max-2025-08-13").patch == 32
    assert catalog.model("qwen-vl-plus").vision.for_model("qwen-vl-plus-2025-07-10").patch == 32
    assert catalog.model("qwen-plus").vision is None


@pytest.mark.parametrize("vision,reason", [
    # Checked against the catalog schema (catalog.schema.json), which names the field.
    ({"patch": "big"}, "models.qwen-vl-max.vision.patch: expected a whole number of 1 or more, found a string"),
    ([28], "models.qwen-vl-max.vision: expected an object with patch, min_tokens and max_tokens, found a list"),
    ({"older_snapshots": {"before": 2025, "patch": 28}},
     "models.qwen-vl-max.vision.older_snapshots.before: expected a date like 2025-08-13, found a number"),
])
def test_a_bad_vision_section_is_a_one_line_error(run, write_batch, tmp_path, vision, reason):
    prices = tmp_path / "prices.json"
    prices.write_text(json.dumps({"models": {"qwen-vl-max": {"vision": vision}}}), "utf-8")
    result = run("compare", write_batch([line("1", model="qwen-vl-max")]), "--prices", prices)
    assert result.exit_code == 2 and reason in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("text,size", [("1024x768", (1024, 768)), ("640X480", (640, 480)), (" 32 x 32 ", (32, 32))])
def test_parse_image_size(text, size):
    assert parse_image_size(text) == size


@pytest.mark.parametrize("text", ["", "1024", "0x10", "axb", "10x10x10", "-5x5"])
def test_parse_image_size_rejects(text):
    with pytest.raises(ValueError):
        parse_image_size(text)


# -- reading data: URLs ------------------------------------------------------------

def data_url(width, height, fmt="PNG", **save):
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buf, fmt, **save)
    mime = {"PNG": "png", "JPEG": "jpeg", "WEBP": "webp", "GIF": "gif"}[fmt]
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "WEBP"])
def test_size_is_read_from_the_header(fmt):
    assert data_url_size(data_url(123, 45, fmt)) == (123, 45)


def test_jpeg_whose_header_is_past_the_first_64k():
    # A 200 KB ICC profile sits before the frame header: the first pass fails,
    # the whole image is decoded.
    url = data_url(77, 66, "JPEG", icc_profile=b"\0" * 200_000)
    assert len(url) > 64 * 1024
    assert data_url_size(url) == (77, 66)


@pytest.mark.parametrize("url,reason", [
    ("data:image/png;base64,aGVsbG8gd29ybGQ=", r"cannot read the image \(not an image format Pillow knows\)"),  # "hello world"
    ("data:image/png;base64,", "cannot read the image"),
    ("data:image/png;base64,!!!", "cannot read the image"),
    ("data:image/png,rawbytes", "not a base64 data: URL"),
])
def test_broken_images_give_a_clear_reason(url, reason):
    with pytest.raises(ImageError, match=reason):
        data_url_size(url)


# -- whole requests ------------------------------------------------------------------

def vl_body(*parts, model="qwen-vl-max", **extra):
    return {"model": model, "messages": [{"role": "user", "content": list(parts)}], **extra}


def image_part(url):
    return {"type": "image_url", "image_url": {"url": url}}


TEXT = {"type": "text", "text": "What is in this picture?"}


@pytest.fixture(scope="module")
def counter():
    return TokenCounter()


def test_recorded_qwen_vl_plus_requests():
    """DashScope's own numbers: input_tokens - image_tokens is everything but
    the image's grid. Without "Picture 1: " before the image it would be 31."""
    doc = json.loads((FIXTURES / "qwen_vl_plus_image_records.json").read_text("utf-8"))
    for case in doc["cases"]:
        body, size = case["body"], (2048, 1365)  # any size: only the rest is checked
        rule = default_catalog().model("qwen-vl-plus").vision
        grid = grid_tokens(*size, rule, body.get("vl_high_resolution_images") is True)
        counted = count_prompt_tokens(body, images=ImageAssumption(size))
        assert counted - grid == case["reported_input_tokens"] - case["reported_image_tokens"] == 36, case["id"]


def test_request_with_a_base64_image(counter):
    body = vl_body(image_part(data_url(640, 480)), TEXT)
    # <|im_start|> "user\nPicture 1: " <|vision_start|> grid <|vision_end|> text <|im_end|> "\n" <|im_start|> "assistant\n"
    # (the alias at 28 pixels: 23 x 17 = 391)
    assert grid_tokens(640, 480, R28) == 391
    expected = (1 + counter.count_text("user\nPicture 1: ") + 2 + 391 + counter.count_text("What is in this picture?")
                + 1 + 1 + 1 + counter.count_text("assistant\n"))
    assert count_prompt_tokens(body) == expected
    assert counter.count_text("user\nPicture 1: ") == counter.count_text("user\n") + 5


def test_images_are_numbered_across_the_request(counter):
    small = image_part(data_url(64, 64))  # 2x2 patches of 32
    body = {"model": "qwen-vl-max", "messages": [
        {"role": "user", "content": [{"type": "text", "text": "Compare "}, small, {"type": "text", "text": "with "}, small]},
        {"role": "assistant", "content": "Same."},
        {"role": "user", "content": [small, {"type": "text", "text": "and this?"}]}]}
    runs = ["user\nCompare Picture 1: ", "with Picture 2: ", "", "assistant\nSame.", "user\nPicture 3: ", "and this?", "assistant\n"]
    specials = 3 * 2 + 3 * 2 + 1  # 3 turns closed, 3 images' marks, the generation header
    newlines = 3
    assert count_prompt_tokens(body) == sum(counter.count_text(r) for r in runs) + specials + newlines + 3 * 4


def test_high_resolution_flag_and_snapshots():
    url = data_url(4000, 3000, "PNG")
    with_image = count_prompt_tokens(vl_body(image_part(url), TEXT))
    high = count_prompt_tokens(vl_body(image_part(url), TEXT, vl_high_resolution_images=True))
    assert high - with_image == grid_tokens(4000, 3000, R28, high_resolution=True) - grid_tokens(4000, 3000, R28) == 143 * 107 - 1230
    newer = count_prompt_tokens(vl_body(image_part(url), TEXT, model="qwen-vl-max-2025-08-13"))
    # 32 pixels a token there: 4000x3000 -> 41 x 30 patches, as for 28 (the cap scales both the same way).
    assert newer == with_image
    tall = data_url(3000, 600, "PNG")
    assert (count_prompt_tokens(vl_body(image_part(tall), TEXT, model="qwen-vl-max-2025-08-13"))
            - count_prompt_tokens(vl_body(image_part(tall), TEXT))) == grid_tokens(3000, 600, R32) - grid_tokens(3000, 600, R28)


def test_remote_images_at_the_assumed_size_or_the_maximum():
    body = vl_body(image_part("https://example.com/cat.jpg"), image_part("https://example.com/dog.jpg"), TEXT)
    found = count_images(body, R32)
    assert (found.images, found.assumed, found.tokens) == (2, 2, 2 * 1280)
    found = count_images(body, R32, ImageAssumption((640, 480)))
    assert (found.assumed, found.tokens) == (2, 2 * 300)


def test_text_only_requests_are_unchanged():
    body = {"model": "qwen-vl-max", "messages": [{"role": "user", "content": [TEXT]}]}
    assert count_prompt_tokens(body) == count_prompt_tokens({"model": "qwen-vl-max", "messages": [{"role": "user", "content": TEXT["text"]}]})


# -- through compare ------------------------------------------------------------------

def compare_json(run, path, *args):
    result = run("compare", path, "--json", *args)
    return result, json.loads(result.stdout)


def warning(doc, kind):
    found = [w for w in doc["warnings"] if w["kind"] == kind]
    return found[0] if found else None


def test_compare_counts_a_base64_image(run, write_batch):
    url = data_url(640, 480, "JPEG")
    path = write_batch([line("1", model="qwen-vl-max", messages=[{"role": "user", "content": [image_part(url), TEXT]}]),
                        line("2", model="qwen-vl-max", messages=[{"role": "user", "content": [TEXT]}])])
    result, doc = compare_json(run, path)
    assert result.exit_code == 0
    with_image = count_prompt_tokens(vl_body(image_part(url), TEXT))
    assert doc["total"]["input_tokens"] == with_image + count_prompt_tokens(vl_body(TEXT))
    assert with_image == count_prompt_tokens(vl_body(image_part("https://x/y.png"), TEXT), images=ImageAssumption((640, 480)))
    assert not warning(doc, "media_not_counted") and not warning(doc, "image_size_assumed")


def test_compare_remote_image_with_and_without_image_size(run, write_batch):
    messages = [{"role": "user", "content": [image_part("https://example.com/a.png"), TEXT]}]
    path = write_batch([line("1", model="qwen-vl-plus", messages=messages)])
    body = vl_body(image_part("https://example.com/a.png"), TEXT, model="qwen-vl-plus")
    at_640 = count_prompt_tokens(body, images=ImageAssumption((640, 480)))
    result, doc = compare_json(run, path)
    assert result.exit_code == 0 and doc["total"]["input_tokens"] == at_640 - grid_tokens(640, 480, R28) + 1280 == count_prompt_tokens(body)
    assumed = warning(doc, "image_size_assumed")
    assert assumed["count"] == 1 and assumed["lines"] == [1] and "per-image maximum of 1280 tokens" in assumed["message"]
    result, doc = compare_json(run, path, "--image-size", "640x480")
    assert doc["total"]["input_tokens"] == at_640
    assert "640x480 from --image-size" in warning(doc, "image_size_assumed")["message"]
    table = run("compare", path, "--image-size", "640x480")
    assert "1 remote images (not fetched), counted at an assumed size (640x480 from --image-size)" in table.stderr


def test_compare_bad_image_size_is_a_usage_error(run, write_batch):
    path = write_batch([line("1")])
    result = run("compare", path, "--image-size", "big")
    assert result.exit_code == 2 and "--image-size" in result.output and "Traceback" not in result.output


def test_compare_broken_image_warns_and_plans_the_rest(run, write_batch):
    broken = "data:image/png;base64,aGVsbG8gd29ybGQ="
    path = write_batch([line("1", model="qwen-vl-max", messages=[{"role": "user", "content": [image_part(broken), TEXT]}]),
                        line("2", model="qwen-vl-max", messages=[{"role": "user", "content": [TEXT]}])])
    result, doc = compare_json(run, path)
    assert result.exit_code == 0 and doc["requests"] == 2
    unreadable = warning(doc, "image_unreadable")
    assert unreadable["lines"] == [1] and "cannot read the image" in unreadable["message"]


def test_video_and_audio_stay_uncounted_with_the_warning(run, write_batch):
    parts = [{"type": "video_url", "video_url": {"url": "https://example.com/v.mp4"}},
             {"type": "input_audio", "input_audio": {"data": "https://example.com/a.mp3", "format": "mp3"}}, TEXT]
    path = write_batch([line("1", model="qwen-vl-max", messages=[{"role": "user", "content": parts}])])
    result, doc = compare_json(run, path)
    assert doc["total"]["input_tokens"] == count_prompt_tokens(vl_body(TEXT))
    assert warning(doc, "media_not_counted")["lines"] == [1]
    assert not warning(doc, "image_size_assumed")


def test_images_for_a_model_without_a_rule_stay_uncounted(run, write_batch):
    path = write_batch([line("1", model="qwen-plus", messages=[{"role": "user", "content": [image_part(data_url(64, 64)), TEXT]}])])
    result, doc = compare_json(run, path)
    assert warning(doc, "media_not_counted")["lines"] == [1]
    # Only "Picture 1: " and the two vision marks are in the count.
    assert doc["total"]["input_tokens"] == count_prompt_tokens(vl_body(TEXT, model="qwen-plus")) + 5 + 2


def test_pillow_is_not_imported_for_text_jobs(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(line("1") + "\n", "utf-8")
    assert modules_imported([["compare", path]], ("PIL",)) == []


def test_images_outside_user_and_system_turns_stay_uncounted(run, write_batch):
    small = image_part(data_url(64, 64))
    messages = [{"role": "user", "content": "Describe it."}, {"role": "assistant", "content": [small, TEXT]},
                {"role": "user", "content": "Thanks"}]
    path = write_batch([line("1", model="qwen-vl-max", messages=messages)])
    result, doc = compare_json(run, path)
    text_only = [dict(m) for m in messages]
    text_only[1] = {"role": "assistant", "content": [TEXT]}
    assert doc["total"]["input_tokens"] == count_prompt_tokens({"model": "qwen-vl-max", "messages": text_only})
    assert warning(doc, "media_not_counted")["lines"] == [1]
