"""The fast paths give the counts of the plain path: worker processes, the
count cache and shared heads, many files and globs, and sampling.

No timing here: the benchmark (benchmarks/run.py) measures speed."""

import json
import os
import random
import subprocess
import sys
import unicodedata
from collections import Counter
from decimal import Decimal

import pytest

from batchplan.planning import planner as plan_module
from batchplan.planning import sampling as sampling_module
from batchplan.planning.aggregate import Plan
from batchplan.planning.planner import Planner, plan_files
from batchplan.planning.reading import BOM
from batchplan.planning.sampling import allocate, lines_beginning_in, parse_sample, plan_sample
from batchplan.planning.tokens import SHARED_HEAD, TokenCounter, load_encoding, safe_cut, vocabulary_path
from tests.conftest import line, modules_imported

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


def test_every_line_has_the_same_chance_to_be_read(tmp_path):
    """A window takes the lines that begin in it: over every offset of a
    file, each line, long, short or blank, is in exactly W windows."""
    rng = random.Random(8)
    data = BOM + b"".join(rng.choice([b"", b"x" * rng.randint(1, 300), "中文".encode() * 40]) + rng.choice([b"\n", b"\r\n"])
                          for _ in range(60)) + b"last line without an ending"
    path = tmp_path / "lines.jsonl"
    path.write_bytes(data)
    size = len(data)
    expected = [0] + [i + 1 for i, byte in enumerate(data[:-1]) if byte == ord("\n")]
    for width in (1, 13, 500, 5000):
        seen = Counter()
        with open(path, "rb") as handle:
            for x in range(size):
                end = x + width
                for a, b in [(x, min(end, size))] + ([(0, end - size)] if end > size else []):
                    for start, length, raw in lines_beginning_in(handle, a, b, True):
                        seen[start] += 1
                        assert length == (expected + [size])[expected.index(start) + 1] - start
        assert sorted(seen) == expected and set(seen.values()) == {width}


def test_sample_is_reproducible_and_names_lines_by_byte_offset(sample_files, encoding, monkeypatch):
    monkeypatch.setattr(sampling_module, "MIN_SAMPLE_BYTES", 0)  # so that 10% is 10%

    def estimate(seed):
        rows = []
        result = plan_sample(sample_files, 0.1, seed, on_request=rows.append, workers=1, planner=Planner(counter=TokenCounter(encoding)))
        return result.sample.document(), rows, result.plan

    first, second, other = estimate(1), estimate(1), estimate(2)
    assert first[0] == second[0] and first[1] == second[1]
    assert [r.line for r in first[1]] != [r.line for r in other[1]] and first[0]["input_tokens"] != other[0]["input_tokens"]
    doc, rows, plan = first
    assert doc["sampled_lines"] == len(rows) and doc["lines"] == plan.lines and not doc["exact"]
    assert 0.1 <= doc["bytes_read"] / doc["bytes"] < 0.3
    data = {path: open(path, "rb").read() for path in sample_files}
    for row in rows:  # each row's line is the byte offset where its line begins
        text = data[row.file][row.line:].split(b"\n", 1)[0]
        assert row.line == 0 or data[row.file][row.line - 1:row.line] == b"\n"
        assert row.custom_id is None or json.loads(text)["custom_id"] == row.custom_id
    assert len({(r.file, r.line) for r in rows}) == len(rows)  # each line once


def test_sample_interval_contains_the_true_total(sample_files, encoding):
    full = plan_files(sample_files, workers=1, planner=Planner(counter=TokenCounter(encoding)))
    truth = full.plan.total()
    result = plan_sample(sample_files, 0.2, 1, workers=1, planner=Planner(counter=TokenCounter(encoding)))
    sample = result.sample
    assert not sample.exact
    assert sample.input_tokens.low <= truth.input_tokens <= sample.input_tokens.high
    assert sample.input_tokens.high - sample.input_tokens.low < truth.input_tokens / 10  # an interval that says something
    assert sample.batch_cost.low <= truth.batch_cost <= sample.batch_cost.high
    assert sample.realtime_cost.low <= truth.realtime_cost <= sample.realtime_cost.high
    assert sample.line_count.low <= full.plan.lines <= sample.line_count.high
    assert sample.requests.low <= full.plan.requests <= sample.requests.high
    assert isinstance(sample.batch_cost.low, Decimal)
    # The table shows the scaled-up plan; its totals are the estimates.
    assert result.plan.total().input_tokens == sample.input_tokens.value
    assert result.plan.lines == sample.line_count.value and result.plan.requests == sample.requests.value
    text = sample.describe("USD")
    assert "95% confidence" in text and f"the {sample.sampled:,} lines" in text


class ByteCounter:
    """Stands in for the tokenizer where a test plans thousands of samples:
    tokens from characters and bytes, so Chinese and English text differ in
    tokens per byte, as with the real vocabulary."""

    def prompt_tokens(self, body, url, template):
        text = "".join(m["content"] for m in body["messages"])
        return len(text) // 3 + len(text.encode()) // 8 + 3


def _varied_file(path, count, seed):
    """Requests whose lengths vary from tens of bytes to 20 KB (log-normal),
    Chinese and English, with three max_tokens."""
    rng = random.Random(seed)
    pool = [_document(rng, n, 20_000) for n in range(40)]
    with open(path, "w", encoding="utf-8") as handle:
        for n in range(count):
            size = int(min(20_000, rng.lognormvariate(6.8, 1.0)))
            doc = rng.choice(pool)
            start = rng.randrange(len(doc) - size + 1) if len(doc) > size else 0
            messages = [{"role": "user", "content": doc[start:start + size]}]
            handle.write(line(f"r{n}", messages=messages, max_tokens=rng.choice([128, 256, 1024])) + "\n")


def test_95_percent_intervals_cover_the_full_count_in_95_of_100_seeds(tmp_path):
    """A 10% sample of a 10 MB file (about 300 lines in 64 windows), 100
    seeds. Measured over 1,000 seeds: prompt tokens 94.8%, lines 96%, batch
    cost 96% (see sampling.py)."""
    path = str(tmp_path / "varied.jsonl")
    _varied_file(path, 3000, 7)
    planner = Planner(counter=ByteCounter())
    full = plan_files([path], workers=1, planner=planner).plan
    truth = full.total()
    covered = Counter()
    for seed in range(100):
        sample = plan_sample([path], 0.1, seed, workers=1, planner=planner).sample
        for name, value, estimate in (("input_tokens", truth.input_tokens, sample.input_tokens),
                                      ("batch_cost", truth.batch_cost, sample.batch_cost),
                                      ("lines", full.lines, sample.line_count)):
            covered[name] += estimate.low <= value <= estimate.high
    assert sample.sampled > 200 and sample.windows == 64
    assert covered["input_tokens"] >= 95, covered
    # Per-request figures (lines, worst-case output) vary more from line to line.
    assert covered["batch_cost"] >= 90 and covered["lines"] >= 90, covered


def test_a_one_percent_sample_reads_about_one_percent(tmp_path, encoding, monkeypatch):
    """Counted at the file handle: not timing."""
    rng = random.Random(2)
    texts = [_document(rng, n, 1000) for n in range(50)]
    path = tmp_path / "big.jsonl"
    with open(path, "w", encoding="utf-8") as handle:
        for n in range(30_000):
            handle.write(line(f"r{n}", messages=[{"role": "user", "content": rng.choice(texts)[: rng.randint(100, 1000)]}]) + "\n")
    size = os.path.getsize(path)
    read = []

    class Counted:
        def __init__(self, handle):
            self.handle = handle

        def read(self, n=-1):
            data = self.handle.read(n)
            read.append(len(data))
            return data

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    real_open = sampling_module.open_input
    monkeypatch.setattr(sampling_module, "open_input", lambda name: Counted(real_open(name)))
    monkeypatch.setattr(sampling_module, "MIN_SAMPLE_BYTES", 0)  # 1% of this file is less than the floor
    result = plan_sample([str(path)], 0.01, 3, workers=1, planner=Planner(counter=TokenCounter(encoding)))
    assert size > 20_000_000
    # 1% in windows, and the rest of the lines that straddle their edges.
    assert 0.01 <= sum(read) / size < 0.015
    assert result.sample.bytes_read == sum(read)
    assert result.sample.sampled < 0.015 * 30_000


def test_sample_on_worker_processes_gives_the_same_estimate(sample_files, encoding, monkeypatch):
    pools = []
    real_pool = plan_module._pool
    monkeypatch.setattr(plan_module, "_pool", lambda workers, planner: pools.append(workers) or real_pool(workers, planner))
    monkeypatch.setattr(sampling_module, "PARALLEL_MIN_BYTES", 0)

    def estimate(workers):
        rows = []
        result = plan_sample(sample_files, 0.1, 4, on_request=rows.append, workers=workers, planner=Planner(counter=TokenCounter(encoding)))
        return result.sample.document(), rows, result.plan

    one, two = estimate(1), estimate(2)
    assert pools == [2] and two == one


def test_a_sample_of_every_line_is_the_full_count(sample_files, encoding):
    full = plan_files(sample_files, workers=1, planner=Planner(counter=TokenCounter(encoding)))
    for size in (10**6, 1.0):
        result = plan_sample(sample_files, size, 0, workers=1, planner=Planner(counter=TokenCounter(encoding)))
        assert result.sample.exact and result.plan.rows == full.plan.rows
        assert result.plan.lines == full.plan.lines and result.plan.invalid == full.plan.invalid
        assert result.sample.input_tokens.low == result.sample.input_tokens.high == full.plan.total().input_tokens


def test_lines_longer_than_the_windows_are_planned_in_full(tmp_path, encoding):
    path = tmp_path / "long.jsonl"
    path.write_text("\n".join(line(f"r{n}", messages=[{"role": "user", "content": "长文 long text " * 4000}]) for n in range(3)) + "\n",
                    encoding="utf-8")
    full = plan_files([str(path)], workers=1).plan
    result = plan_sample([str(path)], 0.01, 0, workers=1, planner=Planner(counter=TokenCounter(encoding)))
    assert result.sample.exact and result.plan.rows == full.rows


def test_full_count_stays_the_default(sample_files):
    plain = json.loads(subprocess.run([sys.executable, "-m", "batchplan", "compare", "--json", *sample_files],
                                      capture_output=True, text=True).stdout)
    assert "sample" not in plain
    run = subprocess.run([sys.executable, "-m", "batchplan", "compare", "--json", "--sample", "0.1", "--seed", "4", *sample_files],
                         capture_output=True, text=True)
    sampled = json.loads(run.stdout)
    doc = sampled["sample"]
    assert doc["seed"] == 4 and 0 < doc["sampled_lines"] < plain["lines"] and doc["positions"] == "byte offsets"
    assert doc["line_count"]["low"] <= plain["lines"] <= doc["line_count"]["high"]
    assert "invalid line: " not in run.stderr or "byte " in run.stderr
    bad = subprocess.run([sys.executable, "-m", "batchplan", "compare", "--sample", "zero", *sample_files],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and "--sample" in bad.stderr and "Traceback" not in bad.stderr


# -- start-up -------------------------------------------------------------------

def test_compare_imports_neither_dashscope_nor_openai(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text(line("1") + "\n", encoding="utf-8")
    assert modules_imported([["compare", path]], ("dashscope", "openai", "httpx")) == []
