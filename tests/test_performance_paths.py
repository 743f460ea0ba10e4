"""The fast paths give the counts of the plain path: worker processes, the
count cache and shared heads, many files and globs, and sampling.

No timing here: the benchmark (benchmarks/run.py) measures speed."""

import json
import os
import random
import subprocess
import sys
import unicodedata
from decimal import Decimal

import pytest

from batchplan import plan as plan_module
from batchplan.aggregate import Plan
from batchplan.plan import Planner, plan_files
from batchplan.sampling import allocate, parse_sample, plan_sample
from batchplan.tokens import SHARED_HEAD, TokenCounter, load_encoding, safe_cut, vocabulary_path

from conftest import line

ZH = ("我们 客户 订单 价格 质量 时间 问题 需要 可以 已经 因为 所以 但是 如果 非常 今天 明天 地址 快递 物流 退款 "
      "售后 系统 数据 模型 接口 文档 用户 账号 支付 发票 金额 优惠 手机 电脑 耳机 电池 北京 上海 市场 报告 分析").split()
EN = ("the of and to in is that for it as was with order delivery package refund product quality price service "
      "support account payment invoice battery screen report market growth data model system update team").split()
SYSTEM = ("你是一名信息抽取助手。Read the document and extract the order id, the amount and the date as JSON.\n" * 12).strip()
INSTRUCTIONS = ("请阅读下面的客户留言，判断情感倾向（positive、neutral、negative），并用一句话概括。\n"
                "Read the customer message below, classify its sentiment and summarise it in one sentence.\n") * 3


def _sentence(rng, zh):
    if zh:
        return "".join(rng.choice(ZH) for _ in range(rng.randint(3, 12))) + rng.choice("，。！？；")
    words = [rng.choice(EN) for _ in range(rng.randint(4, 16))]
    return " ".join(words).capitalize() + rng.choice(".,!?")


def _document(rng, n, size):
    zh = rng.random() < 0.6
    out = [f"编号 {n:06d}" if zh else f"Ticket {n:06d}"]
    while sum(map(len, out)) < size:
        out.append("".join(_sentence(rng, zh) for _ in range(rng.randint(1, 6))))
    return "\n\n".join(out)


def _lines(rng, count, start=1):
    """Batch lines of every shape the fast paths see: unique text, a shared
    system prompt with few-shot turns, a shared instruction head inside the
    user message, tools, content parts, embeddings, invalid and blank lines."""
    few_shot = [{"role": "user", "content": _document(rng, 0, 300)}, {"role": "assistant", "content": '{"order_id": "1"}'}]
    out = []
    for n in range(start, start + count):
        kind = rng.random()
        doc = _document(rng, n, rng.randint(200, 3000))
        if kind < 0.3:
            out.append(line(f"r{n}", messages=[{"role": "user", "content": doc}], max_tokens=256))
        elif kind < 0.55:
            messages = [{"role": "system", "content": SYSTEM}, *few_shot, {"role": "user", "content": doc}]
            out.append(line(f"r{n}", messages=messages, max_tokens=256))
        elif kind < 0.8:
            out.append(line(f"r{n}", messages=[{"role": "user", "content": INSTRUCTIONS + doc}], max_tokens=256))
        elif kind < 0.85:
            tools = [{"type": "function", "function": {"name": "record", "parameters": {"type": "object"}}}]
            out.append(line(f"r{n}", model="qwen-max", messages=[{"role": "system", "content": SYSTEM},
                                                                 {"role": "user", "content": doc}], tools=tools))
        elif kind < 0.9:
            parts = [{"type": "text", "text": INSTRUCTIONS}, {"type": "text", "text": doc}]
            out.append(line(f"r{n}", messages=[{"role": "user", "content": parts}], enable_thinking=True))
        elif kind < 0.95:
            out.append(line(f"r{n}", model="text-embedding-v4", url="/v1/embeddings", input=doc[:2000]))
        elif kind < 0.975:
            out.append('{"custom_id": "bad", "method": "POST"')  # invalid JSON
        else:
            out.append("")  # blank line
    return out


@pytest.fixture(scope="module")
def big_file(tmp_path_factory):
    """About 3 MB of mixed requests, with CRLF line endings on some lines."""
    rng = random.Random(20260412)
    path = tmp_path_factory.mktemp("perf") / "big.jsonl"
    lines = _lines(rng, 1500)
    with open(path, "wb") as handle:
        for i, text in enumerate(lines):
            handle.write(text.encode("utf-8") + (b"\r\n" if i % 7 == 0 else b"\n"))
    assert os.path.getsize(path) > 2 * plan_module.PARALLEL_BLOCK_BYTES
    return path


@pytest.fixture(scope="module")
def encoding():
    return TokenCounter().encoding


def _rows(path, **options):
    rows = []
    result = plan_files([path], on_request=rows.append, **options)
    return result, rows


def test_workers_give_the_counts_of_one_process(big_file, encoding, monkeypatch):
    pools = []
    real_pool = plan_module._pool
    monkeypatch.setattr(plan_module, "_pool", lambda workers, planner: pools.append(workers) or real_pool(workers, planner))
    one, one_rows = _rows(big_file, workers=1, planner=Planner(counter=TokenCounter(encoding)))
    two, two_rows = _rows(big_file, workers=2, parallel_min_bytes=0, planner=Planner(counter=TokenCounter(encoding)))
    assert pools == [2]  # the second run really went through worker processes
    assert two.plan == one.plan and two.files == one.files
    assert two_rows == one_rows
    assert one.plan.requests > 1000 and one.plan.invalid > 0
    assert len(one_rows) == one.plan.lines


def test_cache_and_shared_heads_give_the_counts_of_no_cache(big_file, encoding):
    cached = Planner(counter=TokenCounter(encoding))
    plain = Planner(counter=TokenCounter(encoding, cache=False))
    with_cache, rows = _rows(big_file, workers=1, planner=cached)
    without, plain_rows = _rows(big_file, workers=1, planner=plain)
    assert with_cache.plan == without.plan
    assert [r.input_tokens for r in rows] == [r.input_tokens for r in plain_rows]
    assert cached.counter._heads, "the instruction head shared inside user messages was reused"


def test_counts_match_the_dashscope_tokenizer_by_the_chatml_rule(big_file):
    """The plain script's rule: content tokens + 5 per message + 3, with the
    dashscope SDK's own tokenizer, for chat lines without tools."""
    dashscope = pytest.importorskip("dashscope")
    tokenizer = dashscope.get_tokenizer("qwen-plus")
    counter = TokenCounter()
    checked = 0
    for raw in big_file.read_text("utf-8").splitlines():
        if not raw.strip() or not raw.endswith("}}"):
            continue
        request = json.loads(raw)
        body = request["body"]
        if "messages" not in body or "tools" in body or not all(isinstance(m["content"], str) for m in body["messages"]):
            continue
        expected = 3 + sum(len(tokenizer.encode(m["content"])) + 5 for m in body["messages"])
        assert counter.prompt_tokens(body) == expected
        checked += 1
    assert checked > 800


def test_vocabulary_is_parsed_as_the_sdk_parses_it():
    from dashscope.tokenizers.qwen_tokenizer import QwenTokenizer

    assert load_encoding()._mergeable_ranks == QwenTokenizer._load_tiktoken_bpe(vocabulary_path())


def test_a_cut_after_a_newline_before_a_non_space_keeps_the_count(encoding):
    """What shared heads rely on, on random text rich in the characters the
    split pattern treats specially; cuts elsewhere do change counts."""
    pieces = ["\n", "\n", "\n", "\r\n", " ", "  ", "\t", "\u3000", "\xa0", "\x1c", "\x85", "\u2028", "a", "The",
              "'s", "'S", "é", "e\u0301", "\u0301", "中", "你好", "。", "，", "1", "4567", "#", "-", "!?", "...",
              "<|im_start|>", "<|im_end|>", "<|", "😀", "\u1161", "Ⅷ", "²", "_", "'"]
    rng = random.Random(7)

    def count(text):
        return len(encoding.encode(text, allowed_special="all"))

    safe = unsafe_differ = 0
    for _ in range(3000):
        text = unicodedata.normalize("NFC", "".join(rng.choice(pieces) for _ in range(rng.randint(2, 40))))
        whole = count(text)
        for cut in range(1, len(text)):
            if text[cut - 1] != "\n":
                continue
            if text[cut].isspace():
                unsafe_differ += count(text[:cut]) + count(text[cut:]) != whole
            else:
                assert count(text[:cut]) + count(text[cut:]) == whole, (text, cut)
                assert safe_cut(text, cut) == cut
                safe += 1
    assert safe > 2000 and unsafe_differ > 100


def test_shared_head_counts_equal_whole_counts(encoding):
    rng = random.Random(3)
    head = INSTRUCTIONS * 2
    texts = [head + _document(rng, n, 400) for n in range(30)]
    texts += [head[:-1] + " " + _document(rng, n, 400) for n in range(5)]  # head ends in a space: no safe cut
    texts += ["\n" + head + "\n\n  " + _document(rng, n, 400) for n in range(5)]
    counter = TokenCounter(encoding)
    for text in texts:
        assert counter.count_text(text) == len(encoding.encode(unicodedata.normalize("NFC", text), allowed_special="all"))
    assert any(len(h) >= SHARED_HEAD for h in counter._heads)


def _many_files(tmp_path, sizes):
    rng = random.Random(11)
    folder = tmp_path / "jobs"
    folder.mkdir()
    paths = []
    start = 1
    for i, count in enumerate(sizes):
        path = folder / f"part-{i:02d}.jsonl"
        path.write_text("\n".join(_lines(rng, count, start)) + "\n", encoding="utf-8")
        start += count
        paths.append(str(path))
    return folder, paths


def test_many_files_combined_plan_is_the_sum_of_the_files(tmp_path, encoding):
    folder, paths = _many_files(tmp_path, [40, 1, 0, 25, 60, 3])
    planner = Planner(counter=TokenCounter(encoding))
    result = plan_files(paths, workers=1, planner=planner)
    assert list(result.files) == paths
    alone = [plan_files([p], workers=1, planner=planner).plan for p in paths]
    summed = Plan()
    for plan in alone:
        summed = summed.merge(plan)
    assert result.plan.total() == summed.total() and result.plan.rows == summed.rows
    assert result.plan.lines == summed.lines and result.plan.invalid == summed.invalid
    assert [result.files[p].total() for p in paths] == [p.total() for p in alone]
    # In worker processes, blocks of many small files give the same plans.
    parallel = plan_files(paths, workers=2, parallel_min_bytes=0, planner=Planner(counter=TokenCounter(encoding)))
    assert parallel.plan == result.plan and parallel.files == result.files
    # A file named twice (a glob and its name) is planned once.
    twice = plan_files(paths + [paths[0], os.path.join(str(folder), ".", os.path.basename(paths[3]))], workers=1, planner=planner)
    assert list(twice.files) == paths and twice.plan == result.plan


def test_globs_through_the_command_line(tmp_path):
    folder, paths = _many_files(tmp_path, [30, 20, 10])
    run = subprocess.run([sys.executable, "-m", "batchplan", "compare", "--json", str(folder / "part-*.jsonl")],
                         capture_output=True, text=True)
    doc = json.loads(run.stdout)
    assert [f["path"] for f in doc["files"]] == paths
    for key in ("requests", "input_tokens", "output_tokens"):
        assert doc["total"][key] == sum(f[key] for f in doc["files"])
    assert Decimal(doc["total"]["batch_cost"]) == sum(Decimal(f["batch_cost"]) for f in doc["files"])
    one = json.loads(subprocess.run([sys.executable, "-m", "batchplan", "compare", "--json", paths[1]],
                                    capture_output=True, text=True).stdout)
    assert one["total"]["input_tokens"] == doc["files"][1]["input_tokens"]


# -- sampling -------------------------------------------------------------------

@pytest.mark.parametrize("text, value", [("0.05", 0.05), ("5%", 0.05), ("1.0", 1.0), ("2000", 2000), (" 12 ", 12)])
def test_parse_sample(text, value):
    assert parse_sample(text) == pytest.approx(value) and type(parse_sample(text)) is type(value)


@pytest.mark.parametrize("text", ["0", "0.0", "1.5", "-0.1", "abc", "", "nan", "150%"])
def test_parse_sample_refuses_with_one_line(text):
    with pytest.raises(ValueError) as error:
        parse_sample(text)
    assert "\n" not in str(error.value) and str(error.value)


def test_allocation_is_proportional_with_two_lines_per_file_at_least():
    # 110 lines: 2 from each non-empty file, the other 104 in proportion.
    assert allocate(0.1, [1000, 100, 0, 5]) == [97, 11, 0, 2]
    assert allocate(30, [1000, 1, 2]) == [27, 1, 2]
    assert allocate(5000, [1000, 100]) == [1000, 100]
    assert allocate(1.0, [7, 3]) == [7, 3]


@pytest.fixture(scope="module")
def sample_files(tmp_path_factory):
    rng = random.Random(5)
    folder = tmp_path_factory.mktemp("sample")
    paths = []
    for i, count in enumerate((900, 300)):
        path = folder / f"f{i}.jsonl"
        path.write_text("\n".join(_lines(rng, count, 1 + i * 1000)) + "\n", encoding="utf-8")
        paths.append(str(path))
    return paths


def test_sample_is_reproducible_with_the_same_seed(sample_files, encoding):
    def estimate(seed):
        rows = []
        result = plan_sample(sample_files, 0.1, seed, on_request=rows.append, planner=Planner(counter=TokenCounter(encoding)))
        return result.sample.document(), [(r.line, r.file) for r in rows], result.plan

    first, second, other = estimate(1), estimate(1), estimate(2)
    assert first == second
    assert first[1] != other[1] and first[0]["input_tokens"] != other[0]["input_tokens"]
    doc = first[0]
    assert doc["sampled_lines"] == len(first[1]) == round(0.1 * doc["lines"]) and doc["lines"] == first[2].lines
    big, small = doc["files"]
    assert abs(big["sampled_lines"] / big["lines"] - 0.1) < 0.01 and abs(small["sampled_lines"] / small["lines"] - 0.1) < 0.01


def test_sample_interval_contains_the_true_total(sample_files, encoding):
    full = plan_files(sample_files, workers=1, planner=Planner(counter=TokenCounter(encoding)))
    truth = full.plan.total()
    result = plan_sample(sample_files, 0.2, 1, planner=Planner(counter=TokenCounter(encoding)))
    sample = result.sample
    assert sample.lines == full.plan.lines and not sample.exact
    assert sample.input_tokens.low <= truth.input_tokens <= sample.input_tokens.high
    assert sample.input_tokens.high - sample.input_tokens.low < truth.input_tokens / 2  # an interval that says something
    assert sample.batch_cost.low <= truth.batch_cost <= sample.batch_cost.high
    assert sample.realtime_cost.low <= truth.realtime_cost <= sample.realtime_cost.high
    assert isinstance(sample.batch_cost.low, Decimal)
    # The table shows the scaled-up plan; its total is the estimate.
    assert result.plan.total().input_tokens == sample.input_tokens.value
    assert result.plan.lines == full.plan.lines
    text = sample.describe("USD")
    assert "95% confidence" in text and f"{sample.sampled:,} of {sample.lines:,} lines" in text


def test_95_percent_intervals_cover_the_true_total_about_95_percent_of_the_time(sample_files, encoding):
    truth = plan_files(sample_files, workers=1, planner=Planner(counter=TokenCounter(encoding))).plan.total()
    planner = Planner(counter=TokenCounter(encoding))
    seeds = range(100, 160)
    covered = 0
    for seed in seeds:
        estimate = plan_sample(sample_files, 0.2, seed, planner=planner).sample.input_tokens
        covered += estimate.low <= truth.input_tokens <= estimate.high
    # 60 draws of a 95% interval cover the truth 52 times or more with probability 99.7%.
    assert covered >= 52


def test_sample_of_every_line_is_the_full_count(sample_files, encoding):
    full = plan_files(sample_files, workers=1, planner=Planner(counter=TokenCounter(encoding)))
    result = plan_sample(sample_files, 10**6, 0, planner=Planner(counter=TokenCounter(encoding)))
    assert result.sample.exact and result.plan == full.plan
    assert result.sample.input_tokens.low == result.sample.input_tokens.high == full.plan.total().input_tokens


def test_full_count_stays_the_default(sample_files):
    plain = json.loads(subprocess.run([sys.executable, "-m", "batchplan", "compare", "--json", *sample_files],
                                      capture_output=True, text=True).stdout)
    assert "sample" not in plain
    sampled = json.loads(subprocess.run([sys.executable, "-m", "batchplan", "compare", "--json", "--sample", "0.1",
                                         "--seed", "4", *sample_files], capture_output=True, text=True).stdout)
    assert sampled["sample"]["sampled_lines"] == round(0.1 * plain["lines"]) and sampled["sample"]["seed"] == 4
    assert sampled["lines"] == plain["lines"]
    bad = subprocess.run([sys.executable, "-m", "batchplan", "compare", "--sample", "zero", *sample_files],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--sample" in bad.stderr and "Traceback" not in bad.stderr


# -- start-up -------------------------------------------------------------------

def test_compare_imports_neither_dashscope_nor_openai(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text(line("1") + "\n", encoding="utf-8")
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from batchplan.cli import cli\n"
        f"result = CliRunner().invoke(cli, ['compare', {str(path)!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "print(sorted(m for m in ('dashscope', 'openai', 'httpx') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
