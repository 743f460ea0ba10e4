"""`batchplan split`: parts the Batch API accepts, lines copied byte for byte, a manifest."""

import hashlib
import json
import os

import pytest

from batchplan.catalog.catalog import default_catalog
from batchplan.jobs import split as split_module
from batchplan.jobs.rules import check_file
from batchplan.jobs.split import SplitError, split_file
from tests.conftest import FIXTURES, line

MIXED = FIXTURES / "validate" / "mixed.jsonl"


def lowered(**batch_limits):
    return default_catalog().merged({"batch_limits": batch_limits})


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source_lines(path) -> dict[int, bytes]:
    """Non-blank lines of a file by number, without endings or BOM."""
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    out = {}
    for number, raw in enumerate(data.split(b"\n"), 1):
        raw = raw.removesuffix(b"\r")
        if raw.strip():
            out[number] = raw
    return out


def part_lines(manifest) -> list[tuple[str, list[bytes]]]:
    return [(p.path, open(p.path, "rb").read().split(b"\n")[:-1]) for p in manifest.files]


def test_groups_by_model_url_and_thinking_and_every_part_passes_check_file(tmp_path):
    manifest = split_file(MIXED, tmp_path / "out")
    names = [os.path.basename(p.path) for p in manifest.files]
    assert names == [
        "mixed.qwen-plus.nothinking.part-001.jsonl",
        "mixed.qwen-flash.nothinking.part-001.jsonl",
        "mixed.qwen-plus.thinking.part-001.jsonl",
        "mixed.text-embedding-v4.nothinking.part-001.jsonl",
        "mixed.batch-test-model.nothinking.part-001.jsonl",
    ]
    assert manifest.ok and manifest.rejected == []
    for part in manifest.files:
        check = check_file(part.path, region="cn")
        assert check.ok, (part.path, check.violations)
        assert (check.model, check.url, check.thinking) == (part.model, part.url, part.thinking)
        assert check.requests == part.lines


def test_lines_are_byte_identical_whole_and_in_order(tmp_path):
    manifest = split_file(MIXED, tmp_path / "out")
    source = source_lines(MIXED)
    seen = []
    for path, lines in part_lines(manifest):
        part = next(p for p in manifest.files if p.path == path)
        numbers = [n for n, raw in source.items() if raw in lines]
        assert [source[n] for n in numbers] == lines  # same bytes, same order
        assert (numbers[0], numbers[-1]) == (part.first_line, part.last_line)
        seen += numbers
    assert sorted(seen) == list(source)  # every line once
    assert open(manifest.files[0].path, "rb").read().endswith(b"\n")


def test_rolls_to_a_new_part_at_max_lines(tmp_path, write_batch):
    path = write_batch([line(str(i)) for i in range(1, 6)])
    manifest = split_file(path, tmp_path / "out", max_lines=2)
    assert [(os.path.basename(p.path), p.lines, p.first_line, p.last_line) for p in manifest.files] == [
        ("batch.qwen-plus.nothinking.part-001.jsonl", 2, 1, 2),
        ("batch.qwen-plus.nothinking.part-002.jsonl", 2, 3, 4),
        ("batch.qwen-plus.nothinking.part-003.jsonl", 1, 5, 5),
    ]
    joined = b"".join(open(p.path, "rb").read() for p in manifest.files)
    assert joined == path.read_bytes()


def test_rolls_to_a_new_part_at_max_bytes(tmp_path, write_batch):
    lines = [line(str(i)) for i in range(1, 8)]
    path = write_batch(lines)
    limit = 2 * (len(lines[0]) + 1) + 5  # room for two lines, not three
    manifest = split_file(path, tmp_path / "out", max_bytes=limit)
    assert [p.lines for p in manifest.files] == [2, 2, 2, 1]
    for part in manifest.files:
        assert os.path.getsize(part.path) == part.bytes <= limit
        assert check_file(part.path, catalog=lowered(max_file_bytes=limit)).ok


def test_defaults_come_from_the_catalog(tmp_path, write_batch):
    path = write_batch([line(str(i)) for i in range(5)])
    manifest = split_file(path, tmp_path / "out", catalog=lowered(max_requests=2))
    assert [p.lines for p in manifest.files] == [2, 2, 1]
    assert manifest.max_lines == 2


def test_test_model_group_keeps_the_test_limits(tmp_path, write_batch):
    path = write_batch([line(str(i), model="batch-test-model", url="/v1/chat/ds-test") for i in range(5)] + [line("p")])
    catalog = lowered(test_max_requests=2)
    manifest = split_file(path, tmp_path / "out", catalog=catalog)
    assert [(p.model, p.lines) for p in manifest.files] == [("batch-test-model", 2), ("batch-test-model", 2),
                                                           ("batch-test-model", 1), ("qwen-plus", 1)]
    for part in manifest.files:
        assert check_file(part.path, catalog=catalog).ok


def test_same_model_on_two_urls_gets_two_names(tmp_path, write_batch):
    path = write_batch([line("1"), line("2", url="/v1/embeddings", input="text")])
    manifest = split_file(path, tmp_path / "out")
    assert [os.path.basename(p.path) for p in manifest.files] == [
        "batch.qwen-plus.nothinking.part-001.jsonl",
        "batch.qwen-plus.nothinking.embeddings.part-001.jsonl",
    ]


def test_model_names_are_made_safe_for_file_names(tmp_path, write_batch):
    manifest = split_file(write_batch([line("1", model="team/qwen plus")]), tmp_path / "out")
    assert os.path.basename(manifest.files[0].path) == "batch.team_qwen_plus.nothinking.part-001.jsonl"
    assert manifest.files[0].model == "team/qwen plus"


def test_manifest_content(tmp_path):
    out = tmp_path / "out"
    manifest = split_file(MIXED, out, max_lines=2)
    doc = json.loads((out / "mixed.manifest.json").read_text("utf-8"))
    assert doc == manifest.document()
    assert doc["schema"] == "batchplan.split/1"
    assert doc["source"] == {"path": str(MIXED.resolve()), "sha256": sha(MIXED.read_bytes()),
                             "bytes": MIXED.stat().st_size, "lines": 12}
    assert doc["limits"] == {"max_lines": 2, "max_bytes": default_catalog().batch_limits.max_file_bytes}
    assert doc["rejected"] == [] and doc["rejected_count"] == 0
    assert sum(f["lines"] for f in doc["files"]) == 12
    for entry in doc["files"]:
        data = (out / entry["file"]).read_bytes()
        assert entry["sha256"] == sha(data) and entry["bytes"] == len(data)
        assert entry["lines"] == data.count(b"\n")
        assert set(entry) == {"file", "model", "url", "thinking", "lines", "bytes", "first_line", "last_line", "sha256"}
    first = doc["files"][0]
    assert (first["model"], first["url"], first["thinking"], first["first_line"], first["last_line"]) == (
        "qwen-plus", "/v1/chat/completions", False, 1, 4)


def test_invalid_lines_are_listed_not_written(tmp_path, write_batch):
    path = write_batch([line("1"), "{broken", line("2"), line("1"), "[]"])
    manifest = split_file(path, tmp_path / "out")
    assert not manifest.ok and manifest.rejected_count == 3
    assert [(r.line, r.reason) for r in manifest.rejected] == [
        (2, manifest.rejected[0].reason),
        (4, "custom_id '1' is already used on line 1"),
        (5, "not a JSON object (found an array)"),
    ]
    assert "not valid JSON" in manifest.rejected[0].reason
    [part] = manifest.files
    assert open(part.path, "rb").read() == (line("1") + "\n" + line("2") + "\n").encode()
    doc = json.loads(open(manifest.path, encoding="utf-8").read())
    assert doc["rejected"][2] == {"line": 5, "reason": "not a JSON object (found an array)"}


def test_a_line_larger_than_max_bytes_is_rejected(tmp_path, write_batch):
    big = line("big", messages=[{"role": "user", "content": "x" * 600}])
    path = write_batch([line("1"), big, line("2")])
    manifest = split_file(path, tmp_path / "out", max_bytes=400)
    assert [r.line for r in manifest.rejected] == [2]
    assert "more than a part may hold (400 bytes)" in manifest.rejected[0].reason
    assert [p.lines for p in manifest.files] == [2]


def test_a_line_over_the_line_limit_is_rejected(tmp_path, write_batch):
    big = line("big", messages=[{"role": "user", "content": "x" * 400}])
    path = write_batch([line("1"), big])
    manifest = split_file(path, tmp_path / "out", catalog=lowered(max_line_bytes=300))
    assert [r.line for r in manifest.rejected] == [2]
    assert "limit per line" in manifest.rejected[0].reason


def test_bom_and_crlf_source(tmp_path):
    path = tmp_path / "win.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (line("1") + "\r\n" + line("2", model="qwen-flash") + "\r\n").encode())
    manifest = split_file(path, tmp_path / "out")
    assert [open(p.path, "rb").read() for p in manifest.files] == [(line("1") + "\n").encode(),
                                                                   (line("2", model="qwen-flash") + "\n").encode()]
    for part in manifest.files:
        assert check_file(part.path).ok
    assert manifest.source_sha256 == sha(path.read_bytes())


def test_many_groups_with_few_open_handles(tmp_path, write_batch, monkeypatch):
    monkeypatch.setattr(split_module, "MAX_OPEN", 2)
    models = ["qwen-plus", "qwen-flash", "qwen-turbo", "qwen-max", "qwen3-max"]
    lines = [line(f"{m}-{i}", model=m) for i in range(3) for m in models]
    manifest = split_file(write_batch(lines), tmp_path / "out")
    assert len(manifest.files) == 5
    for part in manifest.files:
        expected = [l for l in lines if f'"model": "{part.model}"' in l]
        assert open(part.path, "rb").read() == "".join(l + "\n" for l in expected).encode()
        assert part.sha256 == sha(open(part.path, "rb").read())


def test_no_overwrite_without_force(tmp_path, write_batch):
    path = write_batch([line("1"), line("2")])
    out = tmp_path / "out"
    first = split_file(path, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    path.write_text(line("9") + "\n", "utf-8")
    with pytest.raises(SplitError, match="already exists$") as refused:
        split_file(path, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched, no temp files left
    again = split_file(path, out, force=True)
    assert open(again.files[0].path, "rb").read() == (line("9") + "\n").encode()
    assert [p.path for p in first.files] == [p.path for p in again.files]
    assert refused.value.hint == "force"  # the CLI words it as --force


def test_a_part_alone_blocks_overwrite(tmp_path, write_batch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "batch.qwen-plus.nothinking.part-001.jsonl").write_text("mine\n")
    with pytest.raises(SplitError, match="part-001.jsonl: already exists"):
        split_file(write_batch([line("1")]), out)
    assert (out / "batch.qwen-plus.nothinking.part-001.jsonl").read_text() == "mine\n"


def test_force_removes_parts_the_old_manifest_listed(tmp_path, write_batch):
    path = write_batch([line(str(i)) for i in range(4)])
    out = tmp_path / "out"
    split_file(path, out, max_lines=1)
    (out / "notes.txt").write_text("keep")
    split_file(path, out, max_lines=2, force=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "batch.manifest.json",
        "batch.qwen-plus.nothinking.part-001.jsonl",
        "batch.qwen-plus.nothinking.part-002.jsonl",
        "notes.txt",
    ]


def test_no_requests_is_an_error_and_writes_nothing(tmp_path, write_batch):
    out = tmp_path / "out"
    with pytest.raises(SplitError, match="no requests"):
        split_file(write_batch(["", "  "]), out)
    assert list(out.iterdir()) == []


def test_limits_over_the_batch_api_are_refused(tmp_path, write_batch):
    path = write_batch([line("1")])
    with pytest.raises(ValueError):
        split_file(path, tmp_path / "out", max_lines=50_001)
    with pytest.raises(ValueError):
        split_file(path, tmp_path / "out", max_bytes=0)


# -- the command ----------------------------------------------------------------

def test_cli_prints_parts_and_manifest(run, tmp_path):
    out = tmp_path / "out"
    result = run("split", MIXED, "--out", out, "--region", "cn")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"{out}/mixed.qwen-plus.nothinking.part-001.jsonl: 3 lines, " \
                       f"{os.path.getsize(out / 'mixed.qwen-plus.nothinking.part-001.jsonl'):,} bytes, qwen-plus, non-thinking, /v1/chat/completions"
    assert len(lines) == 6 and lines[-1] == f"manifest: {out}/mixed.manifest.json"
    assert result.stderr == ""


def test_cli_warns_about_models_the_region_does_not_offer(run, tmp_path, write_batch):
    path = write_batch([line("1", model="qwen-long")])
    result = run("split", path, "--out", tmp_path / "out", "--region", "intl")
    assert result.exit_code == 0
    assert "qwen-long is not offered for batch in intl" in result.stderr


def test_cli_invalid_lines_exit_1(run, tmp_path, write_batch):
    path = write_batch([line("1"), "nope"])
    result = run("split", path, "--out", tmp_path / "out")
    assert result.exit_code == 1
    assert f"{path}:2: left out: not valid JSON" in result.stderr
    assert json.loads((tmp_path / "out" / "batch.manifest.json").read_text())["rejected_count"] == 1


def test_cli_no_overwrite_without_force(run, tmp_path, write_batch):
    path = write_batch([line("1")])
    out = tmp_path / "out"
    assert run("split", path, "--out", out).exit_code == 0
    result = run("split", path, "--out", out)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"batchplan: error: {out}/batch.manifest.json: already exists; pass --force to overwrite it"
    assert run("split", path, "--out", out, "--force").exit_code == 0


@pytest.mark.parametrize("size, lines_per_part", [("1KB", [2, 2, 1]), ("1000", [2, 2, 1]), ("1KiB", [2, 2, 1]), ("3 kb", [5])])
def test_cli_max_bytes_units(run, tmp_path, write_batch, size, lines_per_part):
    path = write_batch([line(str(i), messages=[{"role": "user", "content": "x" * 300}]) for i in range(5)])
    result = run("split", path, "--out", tmp_path / "out", "--max-bytes", size)
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out" / "batch.manifest.json").read_text())
    assert [f["lines"] for f in manifest["files"]] == lines_per_part


def test_max_bytes_parsing():
    from batchplan.cli.files import Size

    assert Size().convert("100MB", None, None) == 100_000_000
    assert Size().convert("6MiB", None, None) == 6 * 1024 * 1024
    assert Size().convert("500000", None, None) == 500_000
    assert Size().convert("1.5GB", None, None) == 1_500_000_000


@pytest.mark.parametrize("args", [
    ["--max-bytes", "lots"],
    ["--max-bytes", "0"],
    ["--max-bytes", "1GB"],  # over the 500 MB Batch API limit
    ["--max-lines", "50001"],
    ["--max-lines", "0"],
])
def test_cli_bad_limits_exit_2(run, tmp_path, write_batch, args):
    result = run("split", write_batch([line("1")]), "--out", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_cli_missing_out_or_file_exit_2(run, tmp_path, write_batch):
    assert run("split", write_batch([line("1")])).exit_code == 2
    result = run("split", tmp_path / "missing.jsonl", "--out", tmp_path / "out")
    assert result.exit_code == 2 and "no such file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_cli_out_is_a_file_exit_2(run, tmp_path, write_batch):
    target = tmp_path / "taken"
    target.write_text("x")
    result = run("split", write_batch([line("1")]), "--out", target)
    assert result.exit_code == 2


def test_help_explains_exit_codes(run):
    text = run("split", "--help").output
    assert "Exit codes" in text and "manifest" in text and "--force" in text
