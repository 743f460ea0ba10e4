"""Stage 3: count tokens, as DashScope bills ``prompt_tokens``.

The vocabulary is the Qwen byte-level BPE that the ``dashscope`` wheel ships as
``resources/qwen.tiktoken`` (the one ``dashscope.get_tokenizer`` uses), run
through ``tiktoken`` with the same split pattern and special tokens, after NFC
normalisation, as the SDK does. The prompt is rendered by ``planning.templates``
into pieces split at special tokens, so each piece is counted on its own with
exactly the result of counting the whole, and repeated pieces (a shared system
prompt, few-shot turns, a tools block) are counted once. A long text that
starts like an earlier one (the same instructions, then a new document) has
its shared head counted once too, cut where the tokenizer itself cuts.

Where a text can be cut without changing its count: right after a newline
followed by a non-space character. No alternative of the split pattern takes
a newline and then anything but whitespace, so a pre-token always ends at
such a cut; the pattern never looks back, and looks ahead only from inside a
run of whitespace, so each side splits into the same pre-tokens on its own;
and BPE never merges across pre-tokens. NFC cannot move the cut either: a
newline never composes. ``tests/planning/test_performance_paths.py`` checks this on
random text.
"""

from __future__ import annotations

import binascii
import importlib.util
import os
import unicodedata
from typing import Any

from batchplan.errors import VocabularyError
from batchplan.planning import templates as chat_templates
from batchplan.planning.templates import SPECIAL

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
# characters, so memory stays flat on files of unique content (each worker
# process has its own; at most 4 bytes a character).
CACHE_CHARS = 2_000_000
# A text of 2 * SHARED_HEAD characters or more is compared with the last text
# that began with the same HEAD_KEY characters; when they share SHARED_HEAD
# characters or more, the shared head, up to a safe cut, is counted once.
# Shorter texts are not worth it. At most RECENT_TEXTS texts are remembered,
# each only up to MAX_HEAD characters, so this memory is bounded too.
SHARED_HEAD = 256
HEAD_KEY = 48
RECENT_TEXTS = 64
MAX_HEAD = 32_768


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
    ranks = read_ranks(path)
    specials = {token: SPECIAL_START_ID + i for i, token in enumerate(SPECIAL_TOKENS)}
    return tiktoken.Encoding("Qwen", pat_str=PAT_STR, mergeable_ranks=ranks, special_tokens=specials)


def read_ranks(path: str) -> dict[bytes, int]:
    """The mergeable ranks of a tiktoken vocabulary file."""
    try:
        with open(path, "rb") as handle:
            contents = handle.read()
    except OSError as exc:
        raise VocabularyError(f"{path}: cannot read the Qwen vocabulary ({exc.strerror or exc})") from None
    # The file is "<base64 token> <rank>" per line, parsed as
    # tiktoken.load.load_tiktoken_bpe does (which would also copy it into a
    # temporary cache directory), in bulk: it is half of start-up.
    fields = contents.split()
    if len(fields) % 2:
        raise VocabularyError(f"{path}: not a tiktoken vocabulary (odd number of fields)")
    try:
        return dict(zip(map(binascii.a2b_base64, fields[0::2]), map(int, fields[1::2])))
    except (binascii.Error, ValueError) as exc:
        raise VocabularyError(f"{path}: not a tiktoken vocabulary ({exc})") from None


_SHARED_ENCODING = None


def shared_encoding():
    """The Qwen encoding, loaded once per process and shared by every counter
    (it is immutable; loading it is most of start-up)."""
    global _SHARED_ENCODING
    if _SHARED_ENCODING is None:
        _SHARED_ENCODING = load_encoding()
    return _SHARED_ENCODING


class TokenCounter:
    """Counts prompt tokens. The vocabulary loads once per process; counting is pure."""

    def __init__(self, encoding: Any = None, cache: bool = True):
        self._encoding = encoding
        self._use_cache = cache
        self._cache: dict[str, int] = {}  # text as given -> count
        self._heads: dict[str, int] = {}  # NFC shared head -> count
        self._recent: dict[str, str] = {}  # first HEAD_KEY characters -> last long NFC text
        self._cache_chars = 0
        self._length = None  # ordinary_length(encoding), once it is loaded

    @property
    def encoding(self):
        if self._encoding is None:
            self._encoding = shared_encoding()
        return self._encoding

    def count_text(self, text: str) -> int:
        """Tokens in ``text`` as the dashscope SDK's tokenizer counts them
        (special-token text is read as the special token)."""
        cached = self._cache.get(text)
        if cached is not None:
            return cached
        return self._count_new(text)

    def _count_new(self, text: str) -> int:
        """count_text for a text not in the cache."""
        # ASCII text is always in NFC (and isascii() costs nothing).
        normal = text if text.isascii() else unicodedata.normalize("NFC", text)
        size = len(normal)
        if not self._use_cache or size > LONG_TEXT:
            # Past LONG_TEXT the text is cut anyway; reusing a head there
            # could move those cuts, so it is not done.
            count = self._count_normal(normal)
            if not self._use_cache:
                return count
        elif size < 2 * SHARED_HEAD:
            count = self._encode_len(self.encoding, normal)
        else:
            count = self._count_with_shared_head(normal)
        if self._cache_chars > CACHE_CHARS:
            self._cache.clear()
            self._heads.clear()
            self._recent.clear()
            self._cache_chars = 0
        self._cache[text] = count
        self._cache_chars += len(text)
        return count

    def _count_normal(self, normal: str) -> int:
        """Tokens in NFC text, without the cache."""
        encoding = self.encoding
        if len(normal) > LONG_TEXT:
            return sum(self._encode_len(encoding, part) for part in _pieces(normal))
        return self._encode_len(encoding, normal)

    def _count_with_shared_head(self, normal: str) -> int:
        """Count a long text, reusing the count of the head it shares with
        the last text that began the same way."""
        key = normal[:HEAD_KEY]
        recent = self._recent
        earlier = recent.get(key)
        if earlier is None and len(recent) >= RECENT_TEXTS:
            recent.clear()
        recent[key] = normal[:MAX_HEAD]
        cut = shared_cut(earlier, normal) if earlier is not None else 0
        encoding = self.encoding
        if cut < SHARED_HEAD:
            return self._encode_len(encoding, normal)
        head = normal[:cut]
        count = self._heads.get(head)
        if count is None:
            count = self._heads[head] = self._encode_len(encoding, head)
            self._cache_chars += cut
        return count + self._encode_len(encoding, normal[cut:])

    def _encode_len(self, encoding: Any, text: str) -> int:
        if "<|" in text:
            return len(encoding.encode(text, allowed_special="all"))
        length = self._length
        if length is None:
            length = self._length = ordinary_length(encoding)
        return length(text)

    def count_pieces(self, pieces: list[str | None]) -> int:
        """Tokens in a rendered prompt: ``SPECIAL`` (None) pieces are one token each."""
        total = 0
        cache = self._cache
        for piece in pieces:
            if piece is SPECIAL:
                total += 1
            else:
                # count_text, with its cache lookup inlined: most pieces hit.
                count = cache.get(piece)
                total += count if count is not None else self._count_new(piece)
        return total

    def prompt_tokens(self, body: dict[str, Any], url: str = "/v1/chat/completions", template: str = "qwen3") -> int:
        """The ``prompt_tokens`` DashScope bills for one request body.

        ``template`` is the family that renders ``tools``: "qwen2.5" or "qwen3".
        """
        if url == "/v1/embeddings":
            text = body["input"]
            texts = [text] if isinstance(text, str) else text
            return sum(self.count_text(t) for t in texts)
        vocabulary = chat_templates.family_of(template).vocabulary
        if vocabulary != "qwen":  # a family billed in another vocabulary (planning.vocabularies)
            return self._counter_for(vocabulary).count_pieces(chat_templates.render(body, template))
        return self.count_pieces(chat_templates.render(body, template))

    def _counter_for(self, vocabulary: str) -> "TokenCounter":
        """A counter over another vocabulary, made once per counter."""
        others = self.__dict__.setdefault("_others", {})
        if vocabulary not in others:
            from batchplan.planning.vocabularies import shared_encoding as other_encoding

            others[vocabulary] = TokenCounter(other_encoding(vocabulary), cache=self._use_cache)
        return others[vocabulary]


_PROBE = "Hello, world! 你好，世界。 Ünïcödé  \n\n  1234 <|endoftext|> 😀"


def ordinary_length(encoding: Any):
    """A function giving ``len(encoding.encode_ordinary(text))``.

    Where tiktoken's core has ``encode_to_tiktoken_buffer`` (what
    ``Encoding.encode_to_numpy`` uses; private, tiktoken 0.7 and later), the
    tokens come back as one buffer of uint32 instead of a list of Python
    ints, and the length is its size in bytes / 4: about 5% less time on
    unique content (measured 2026-12-02, tiktoken 0.14). The size is taken
    from ``bytes(buffer)``, not ``memoryview``, whose shape tiktoken 0.14
    reports wrongly (openai/tiktoken#405). An empty allowed set encodes
    special-token text as ordinary text, as ``encode_ordinary`` does. The
    function is checked against ``encode_ordinary`` once per encoding and
    ``encode_ordinary`` is used where the check fails, the method is
    missing, or a text cannot be encoded as UTF-8 (lone surrogates, which
    ``encode_ordinary`` repairs).
    """
    plain = encoding.encode_ordinary

    def by_list(text: str) -> int:
        return len(plain(text))

    function = by_list
    to_buffer = getattr(getattr(encoding, "_core_bpe", None), "encode_to_tiktoken_buffer", None)
    if to_buffer is not None:
        nothing = frozenset()

        def by_buffer(text: str) -> int:
            try:
                return len(bytes(to_buffer(text, nothing))) >> 2
            except UnicodeEncodeError:
                return len(plain(text))

        try:
            if all(by_buffer(t) == by_list(t) for t in (_PROBE, _PROBE * 3, "", "a")):
                function = by_buffer
        except Exception:  # a changed private API: keep the public one
            pass
    return function


def safe_cut(text: str, end: int) -> int:
    """The last position at or before ``end`` where ``text`` can be cut
    without changing its count (right after a newline followed by a
    non-space character; see the module notes), or 0 when there is none."""
    newline = text.rfind("\n", 0, end)
    while newline >= 0:
        after = newline + 1
        if after < len(text) and not text[after].isspace():
            return after
        newline = text.rfind("\n", 0, newline)
    return 0


def shared_cut(earlier: str, text: str) -> int:
    """A safe cut of ``text`` within the head it shares with ``earlier``, or
    0 when they share fewer than SHARED_HEAD characters."""
    if earlier[:SHARED_HEAD] != text[:SHARED_HEAD]:
        return 0
    # Binary search for the length of the common prefix; slices compare in C.
    low, high = SHARED_HEAD, min(len(earlier), len(text))
    while low < high:
        middle = (low + high + 1) // 2
        if earlier[low:middle] == text[low:middle]:
            low = middle
        else:
            high = middle - 1
    return safe_cut(text, low)


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
