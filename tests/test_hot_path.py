"""The fast paths of counting and planning give exactly what the plain ones give."""

import random

import pytest

from batchplan.tokens import TokenCounter, ordinary_length

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
