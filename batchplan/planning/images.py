"""Image parts, counted as DashScope bills them (Qwen-VL models).

An image is resized so each side is a multiple of the model's patch (28 or 32
pixels) and its area stays within a minimum and a maximum number of patches;
each patch is one token, and ``<|vision_start|>``/``<|vision_end|>`` add two
more (the renderer counts those two, as special pieces). The rule, its limits
and ``vl_high_resolution_images`` are DashScope's ("视觉理解 / 图像Token换算",
help.aliyun.com/zh/model-studio/vision), kept per model in the catalog.

The size of a base64 ``data:`` image is read from its header with Pillow
(imported only when a request has one; the pixels are never decoded). A remote
URL cannot be fetched offline: it is counted at ``--image-size WxH`` when given,
else at the per-image maximum, and either way reported as an assumption.

Pure: data in, data out; no network, no files.
"""

from __future__ import annotations

import binascii
import io
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable

from batchplan.catalog.vision import VisionRule
from batchplan.errors import InputError
from batchplan.planning.templates import counted_images

# Tokens of <|vision_start|> and <|vision_end|> around each image.
VISION_MARK_TOKENS = 2
# Base64 characters decoded first to find the header (PNG, GIF, WebP and most
# JPEGs have it near the start); the whole image only when that is not enough.
HEADER_CHARS = 64 * 1024


def resized(width: int, height: int, rule: VisionRule, high_resolution: bool = False,
            max_pixels: int | None = None, min_pixels: int | None = None) -> tuple[int, int]:
    """The size DashScope resizes an image to, as its documented code does:
    round each side to the patch, then scale into [min_pixels, max_pixels]."""
    p = rule.patch
    low = min_pixels if min_pixels is not None else rule.min_tokens * p * p
    if high_resolution:
        high = rule.max_tokens_high_resolution * p * p
    else:
        high = max_pixels if max_pixels is not None else rule.max_tokens * p * p
    h_bar = round(height / p) * p
    w_bar = round(width / p) * p
    if h_bar * w_bar > high:
        beta = math.sqrt((height * width) / high)
        h_bar = math.floor(height / beta / p) * p
        w_bar = math.floor(width / beta / p) * p
    elif h_bar * w_bar < low:
        beta = math.sqrt(low / (height * width))
        h_bar = math.ceil(height * beta / p) * p
        w_bar = math.ceil(width * beta / p) * p
    # A side never goes below one patch (qwen_vl_utils does the same; the
    # documented code leaves it to the service's aspect-ratio limit).
    return max(p, w_bar), max(p, h_bar)


def grid_tokens(width: int, height: int, rule: VisionRule, high_resolution: bool = False,
                max_pixels: int | None = None, min_pixels: int | None = None) -> int:
    """Tokens of the image itself, without the two vision marks."""
    w, h = resized(width, height, rule, high_resolution, max_pixels, min_pixels)
    return (w * h) // (rule.patch * rule.patch)


def image_tokens(width: int, height: int, rule: VisionRule, high_resolution: bool = False) -> int:
    """Tokens DashScope bills for one image: its grid plus the two vision marks."""
    return grid_tokens(width, height, rule, high_resolution) + VISION_MARK_TOKENS


class ImageError(InputError, ValueError):
    """An image part whose size cannot be read."""


def image_url(part: dict[str, Any]) -> str:
    """The URL of an image part: ``image_url.url`` (OpenAI style), or the
    string given as ``image_url`` or ``image``."""
    value = part.get("image_url", part.get("image"))
    if isinstance(value, dict):
        value = value.get("url")
    if not isinstance(value, str) or not value:
        raise ImageError("image part without a URL")
    return value


def _limits(part: dict[str, Any]) -> tuple[int | None, int | None]:
    """max_pixels/min_pixels set on the part or on its image_url object, if any
    (where DashScope takes them in the compatible API is an assumption)."""
    inner = part.get("image_url") if isinstance(part.get("image_url"), dict) else {}
    values = []
    for key in ("max_pixels", "min_pixels"):
        value = part.get(key, inner.get(key))
        values.append(value if type(value) is int and value > 0 else None)
    return values[0], values[1]


def data_url_size(url: str) -> tuple[int, int]:
    """(width, height) of a base64 ``data:`` image, read from its header."""
    head, sep, data = url.partition(",")
    if not sep or not head.startswith("data:") or not head.endswith(";base64"):
        raise ImageError("not a base64 data: URL")
    import warnings

    from PIL import Image, UnidentifiedImageError  # only when a request has one

    errors = (UnidentifiedImageError, Image.DecompressionBombError, OSError, SyntaxError, ValueError, EOFError,
              binascii.Error)
    cut = HEADER_CHARS if len(data) > HEADER_CHARS else len(data)
    for chunk in (data[:cut], data) if cut < len(data) else (data,):
        try:
            raw = binascii.a2b_base64(chunk)
            with warnings.catch_warnings():
                # Only the header is read, so a "decompression bomb" is harmless here.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(raw)) as image:
                    width, height = image.size
            if width > 0 and height > 0:
                return width, height
        except errors as exc:
            last = exc
        else:
            last = ValueError("empty image")
    if isinstance(last, UnidentifiedImageError):
        reason = "not an image format Pillow knows"  # its own message names a memory address
    else:
        reason = str(last).split("\n")[0] or type(last).__name__
    raise ImageError(f"cannot read the image ({reason})")


@dataclass
class ImageCount:
    """The images of one request: their grid tokens and what was assumed."""

    tokens: int = 0
    images: int = 0
    assumed: int = 0  # remote images counted at an assumed size
    unreadable: list[str] = field(default_factory=list)  # reasons, one per image not counted


@dataclass(frozen=True)
class ImageAssumption:
    """The size assumed for remote images: ``size`` (width, height), or None
    for the per-image maximum (the worst case)."""

    size: tuple[int, int] | None = None

    def describe(self, rule: VisionRule | None = None, high_resolution: bool = False) -> str:
        if self.size is not None:
            return f"{self.size[0]}x{self.size[1]} from --image-size"
        if rule is None:
            return "the per-image maximum; --image-size WxH sets a size"
        cap = rule.max_tokens_high_resolution if high_resolution else rule.max_tokens
        return f"the per-image maximum of {cap} tokens; --image-size WxH sets a size"


def parse_image_size(text: str) -> tuple[int, int]:
    """``WxH`` (e.g. 1024x768) as (width, height); ValueError otherwise."""
    found = re.fullmatch(r"\s*(\d{1,6})\s*[xX×]\s*(\d{1,6})\s*", text or "")
    if not found or int(found.group(1)) < 1 or int(found.group(2)) < 1:
        raise ValueError(f"{text!r} is not a size like 1024x768")
    return int(found.group(1)), int(found.group(2))


def count_images(body: dict[str, Any], rule: VisionRule, assumption: ImageAssumption = ImageAssumption()) -> ImageCount:
    """Grid tokens of the images the renderer places (see
    ``templates.counted_images``), for one request body."""
    high = body.get("vl_high_resolution_images") is True
    out = ImageCount()
    for part in _parts(body.get("messages", ())):
        out.images += 1
        max_pixels, min_pixels = _limits(part)
        try:
            url = image_url(part)
            if url.startswith("data:"):
                width, height = data_url_size(url)
            elif assumption.size is not None:
                width, height = assumption.size
                out.assumed += 1
            else:
                out.assumed += 1
                cap = rule.max_tokens_high_resolution if high else (max_pixels // (rule.patch * rule.patch) if max_pixels else rule.max_tokens)
                out.tokens += cap
                continue
        except ImageError as exc:
            out.unreadable.append(str(exc))
            continue
        out.tokens += grid_tokens(width, height, rule, high, max_pixels, min_pixels)
    return out


def _parts(messages: Iterable[dict[str, Any]]):
    for message in messages:
        yield from counted_images(message)
