"""Messages about lines read ``PATH:LINE: reason`` (the compiler convention
editors and CI log parsers read), with the path as the user wrote it, in
every command; compressed files are refused as a whole."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import json
import lzma
import zipfile

import pytest

from tests.conftest import line

CHAT = '"method":"POST","url":"/v1/chat/completions"'
BODY = '"body":{"model":"qwen-plus","messages":[{"role":"user","content":"Hello!"}]}'
BAD_UTF8 = b'{"custom_id":"u\xff",' + CHAT.encode() + b"," + BODY.encode() + b"}"
DEEP = ('{"custom_id":"d",' + CHAT + ',"body":{"model":"qwen-plus","messages":' + "[" * 2000 + "]" * 2000 + "}}").encode()

# Every kind of bad line, each with the one reason it must be reported with.
BAD = [
    (b'{"custom_id":"j", oops}', "not valid JSON (unexpected character, expected a string key, at column 19)"),
    (b"[1, 2]", "not a JSON object (found an array)"),
    (('{"custom_id":"m","url":"/v1/chat/completions",' + BODY + "}").encode(), "missing method"),
    (('{"custom_id":7,' + CHAT + "," + BODY + "}").encode(), "custom_id must be a string, not a number"),
    (BAD_UTF8, "not valid UTF-8 (byte 16 of the line)"),  # the 0xff after '{"custom_id":"u'
    (DEEP, "nesting too deep to parse (more than 1024 levels of arrays and objects)"),
    (b'{"custom_id":"p",', "not valid JSON (the line ends before the JSON does; each request must be on one line)"),
]
TRUNCATED = ('{"custom_id":"t",' + CHAT + ',"body":{"model":"qwen-pl').encode()
TRUNCATED_REASON = "truncated: the last line ends before its JSON does, and has no newline (was the file cut short?)"


@pytest.fixture
def bad_file(tmp_path, monkeypatch):
    """data/in.jsonl, named relative to the working folder as a user would:
    a good line, every kind of bad line, a good line, a truncated last line."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    raw = [line("good-1").encode()] + [b for b, _ in BAD] + [line("good-2").encode()]
    (tmp_path / "data" / "in.jsonl").write_bytes(b"\n".join(raw) + b"\n" + TRUNCATED)
    expected = [f"data/in.jsonl:{n}: {reason}" for n, (_, reason) in enumerate(BAD, start=2)]
    return "data/in.jsonl", expected + [f"data/in.jsonl:{len(BAD) + 3}: {TRUNCATED_REASON}"]


def test_every_kind_of_bad_line_reads_path_line_reason_in_every_command(run, bad_file, tmp_path):
    path, expected = bad_file
    compared = run("compare", path, "--json", "--per-request", "rows.csv")
    assert compared.exit_code == 1
    assert compared.stderr.splitlines() == expected  # nothing else: no traceback, no other wording
    doc = json.loads(compared.stdout)
    assert doc["requests"] == 2 and doc["invalid_lines"] == len(expected)  # the good lines are still planned
    assert [e["message"] for e in doc["errors"]] == expected
    assert {e["file"] for e in doc["errors"]} == {path}
    rows = list(csv.DictReader((tmp_path / "rows.csv").open(encoding="utf-8")))
    assert [r["error"] for r in rows if r["error"]] == expected
    assert {r["file"] for r in rows} == {path}

    validated = run("validate", path)
    assert validated.exit_code == 1
    violations = [l for l in validated.stdout.splitlines() if ": invalid_line: " in l]
    assert violations == [e.replace(": ", ": invalid_line: ", 1) for e in expected]

    split = run("split", path, "--out", "parts")
    assert split.exit_code == 1
    left_out = [l for l in split.stderr.splitlines() if ": left out: " in l]
    assert left_out == [e.replace(": ", ": left out: ", 1) for e in expected]


def test_bad_lines_of_several_files_name_their_own_file(run, write_batch):
    a = write_batch([line("1"), "nope"], name="a.jsonl")
    b = write_batch(["[]", line("2")], name="b.jsonl")
    result = run("compare", a, b)
    assert result.exit_code == 1
    assert result.stderr.splitlines()[:2] == [
        f"{a}:2: not valid JSON (invalid literal, expected 'null', at column 1)",
        f"{b}:1: not a JSON object (found an array)",
    ]


def test_first_20_bad_lines_then_a_count(run, write_batch):
    path = write_batch([line("ok")] + [f"bad {i}" for i in range(25)])
    result = run("compare", path)
    lines = result.stderr.splitlines()
    assert [l.split(":")[1] for l in lines[:20]] == [str(n) for n in range(2, 22)]
    assert all(l.startswith(f"{path}:") for l in lines[:20])
    assert lines[20] == "... and 5 more invalid line(s) (see --json or --per-request)"


def _zstd_frame(data: bytes) -> bytes:
    return b"\x28\xb5\x2f\xfd" + data  # the magic number is all the check reads


def _zip(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("in.jsonl", data)
    return buffer.getvalue()


COMPRESSORS = [
    (gzip.compress, "gzip", "gunzip"),
    (bz2.compress, "bzip2", "bunzip2"),
    (lzma.compress, "xz", "unxz"),
    (_zstd_frame, "zstd", "unzstd"),
    (_zip, "zip", "unzip"),
]


@pytest.mark.parametrize("compress, kind, tool", COMPRESSORS, ids=[c[1] for c in COMPRESSORS])
def test_a_compressed_file_given_by_mistake_is_one_error_and_exit_2(run, tmp_path, compress, kind, tool):
    plain = (line("1") + "\n").encode()
    path = tmp_path / "in.jsonl.gz"
    path.write_bytes(compress(plain))
    message = f"batchplan: error: {path}: is {kind}-compressed, not JSON lines; decompress it first ({tool})"
    good = tmp_path / "good.jsonl"
    good.write_bytes(plain)
    for args in (["compare", path], ["compare", good, path], ["validate", path], ["split", path, "--out", tmp_path / "o"],
                 ["reconcile", path, good], ["reconcile", good, path], ["compare", good, "--calibrate", path]):
        result = run(*args)
        assert result.exit_code == 2, args
        assert result.stderr.strip() == message, args


def test_reconcile_names_input_and_result_lines(run, tmp_path, monkeypatch):
    from tests.conftest import FIXTURES

    monkeypatch.chdir(tmp_path)
    source = (FIXTURES / "reconcile" / "input.jsonl").read_bytes().splitlines()
    (tmp_path / "in.jsonl").write_bytes(b"\n".join(source[:2] + [b'{"custom_id":"x","method":"GET"}']) + b"\n")
    output = (FIXTURES / "reconcile" / "output.jsonl").read_bytes().splitlines()
    # custom_id 5 (a failure) is not in this input: it is named by its line in the output.
    failed_at = next(n for n, l in enumerate(output, start=1) if b'"custom_id":"5"' in l)
    (tmp_path / "out.jsonl").write_bytes(b"\n".join(output) + b"\n")
    result = run("reconcile", "in.jsonl", "out.jsonl")
    lines = result.stdout.splitlines()
    assert "in.jsonl:3: method must be POST, not 'GET'" in lines
    assert (f"out.jsonl:{failed_at}: failed (custom_id 5, not in the input): data_inspection_failed: "
            "Input data may contain inappropriate content.") in lines
    assert json.loads(run("reconcile", "in.jsonl", "out.jsonl", "--json").stdout)["invalid"] == [
        "in.jsonl:3: method must be POST, not 'GET'"]


def test_warnings_name_their_lines_as_path_line(run, write_batch):
    a = write_batch([line("1"), line("2", model="qwen-mystery")], name="a.jsonl")
    b = write_batch([line("3", model="qwen-mystery")], name="b.jsonl")
    result = run("compare", a, b)
    (unpriced,) = [l for l in result.stderr.splitlines() if "no price" in l]
    assert unpriced.endswith(f"; lines {a}:2, {b}:1")


def test_submit_warnings_leave_invalid_lines_to_the_violations(write_batch):
    from batchplan.jobs.rules import check_file
    from batchplan.reports.batches import plan_warning_lines, violation_lines

    path = write_batch([line("1"), "nope", line("2", model="qwen-mystery")])
    check = check_file(path)
    warnings = plan_warning_lines(check)
    assert not any(":2: " in w for w in warnings) and any("no price" in w for w in warnings)
    assert f"{path}:2: invalid_line: not valid JSON (invalid literal, expected 'null', at column 1)" in violation_lines(check, str(path))
