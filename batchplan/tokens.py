"""Stage 3: count tokens, as DashScope bills ``prompt_tokens``.

The vocabulary is the Qwen byte-level BPE that the ``dashscope`` wheel ships as
``resources/qwen.tiktoken`` (the one ``dashscope.get_tokenizer`` uses), run
through ``tiktoken`` with the same split pattern and special tokens, after NFC
normalisation, as the SDK does. The prompt is rendered by ``chat_templates``
into pieces split at special tokens, so each piece is counted on its own with
exactly the result of counting the whole, and repeated pieces (a shared system
prompt, few-shot turns, a tools block) are counted once.
"""

from __future__ import annotations

import base64
import importlib.util
import os
import unicodedata
from typing import Any

from . import chat_templates
from .chat_templates import SPECIAL

# From dashscope/tokenizers/qwen_tokenizer.py: the split pattern and the
# special tokens of the Qwen vocabulary.
PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
SPECIAL_START_ID = 151643
SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>") + tuple(f"<|extra_{i}|>" for i in range(205))

# The SDK splits text above this length before encoding, because tiktoken can
# overflow its stack on one huge piece. We split only where the split pattern
# itself would (a newline followed by a letter), so counts do not change.
LONG_TEXT = 100_000
# The cache of piece counts is cleared when its keys exceed this many
# characters, so memory stays flat on files of unique content.
CACHE_CHARS = 8_000_000


class VocabularyError(RuntimeError):
    """The Qwen vocabulary could not be found or read."""


def vocabulary_path() -> str:
    """Where the dashscope wheel keeps qwen.tiktoken. Found without importing
    dashscope, whose import takes about a second."""
    spec = importlib.util.find_spec("dashscope")
    if spec is None or not spec.submodule_search_locations:
        raise VocabularyError("the dashscope package is not installed; it ships the Qwen vocabulary (pip install dashscope)")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, "resources", "qwen.tiktoken")
        if os.path.exists(path):
            return path
    raise VocabularyError("the installed dashscope package has no resources/qwen.tiktoken")


def load_encoding(path: str | None = None):
    """A tiktoken Encoding over the Qwen vocabulary."""
    import tiktoken

    path = path or vocabulary_path()
    try:
        with open(path, "rb") as handle:
            contents = handle.read()
    except OSError as exc:
        raise VocabularyError(f"{path}: cannot read the Qwen vocabulary ({exc.strerror or exc})") from None
    # Same parsing as tiktoken.load.load_tiktoken_bpe, which would also copy
    # the file into a temporary cache directory.
    ranks = {base64.b64decode(token): int(rank) for token, rank in (line.split() for line in contents.splitlines() if line)}
    specials = {token: SPECIAL_START_ID + i for i, token in enumerate(SPECIAL_TOKENS)}
    return tiktoken.Encoding("Qwen", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=specials)


class TokenCounter:
    """Counts prompt tokens. Load once per process; counting is pure."""

    def __init__(self, encoding: Any = None):
        self._encoding = encoding
        self._cache: dict[str, int] = {}
        self._cache_chars = 0

    @property
    def encoding(self):
        if self._encoding is None:
            self._encoding = load_encoding()
        return self._encoding

    def count_text(self, text: str) -> int:
        """Tokens in ``text`` as the dashscope SDK's tokenizer counts them
        (special-token text is read as the special token)."""
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        normal = unicodedata.normalize("NFC", text)
        encoding = self.encoding
        if len(normal) > LONG_TEXT:
            count = sum(self._encode_len(encoding, part) for part in _pieces(normal))
        else:
            count = self._encode_len(encoding, normal)
        if self._cache_chars > CACHE_CHARS:
            self._cache.clear()
            self._cache_chars = 0
        self._cache[text] = count
        self._cache_chars += len(text)
        return count

    @staticmethod
    def _encode_len(encoding: Any, text: str) -> int:
        if "<|" in text:
            return len(encoding.encode(text, allowed_special="all"))
        return len(encoding.encode_ordinary(text))

    def count_pieces(self, pieces: list[str | None]) -> int:
        """Tokens in a rendered prompt: ``SPECIAL`` (None) pieces are one token each."""
        total = 0
        for piece in pieces:
            total += 1 if piece is SPECIAL else self.count_text(piece)
        return total

    def prompt_tokens(self, body: dict[str, Any], url: str = "/v1/chat/completions", template: str = "qwen3") -> int:
        """The ``prompt_tokens`` DashScope bills for one request body.

        ``template`` is the family that renders ``tools``: "qwen2.5" or "qwen3".
        """
        if url == "/v1/embeddings":
            text = body["input"]
            texts = [text] if isinstance(text, str) else text
            return sum(self.count_text(t) for t in texts)
        return self.count_pieces(chat_templates.render(body, template))


def _pieces(text: str) -> list[str]:
    """Split a long text at newline-then-letter points, where the split pattern
    also breaks, so the parts' counts add up to the whole's."""
    parts = []
    start = 0
    while len(text) - start > LONG_TEXT:
        cut = text.rfind("\n", start + 1, start + LONG_TEXT)
        while cut > start and not text[cut + 1 : cut + 2].isalpha():
            cut = text.rfind("\n", start + 1, cut)
        if cut <= start:
            # No safe boundary: cut hard, as the SDK does (may differ by a token).
            cut = start + LONG_TEXT - 1
        parts.append(text[start : cut + 1])
        start = cut + 1
    parts.append(text[start:])
    return parts
