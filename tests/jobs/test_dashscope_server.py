"""Tests for the fake DashScope Batch server, driven only through the real ``openai`` SDK.

The recorded real objects these shapes are compared against live in
``tests/fixtures/batch/real_samples.jsonl`` (copied from the shared ground truth;
nothing outside the repo is read at run time).  Only 127.0.0.1 is contacted.
"""

from __future__ import annotations

import concurrent.futures
import json
import pathlib
import zlib

import openai
import pytest
from openai import OpenAI

from tests.fakes.dashscope_server import (
    FakeDashScope,
    default_completion_tokens,
    default_prompt_tokens,
    fake_dashscope_fixture,
)

FIXTURES = pathlib.Path(__file__).parent.parent / "fixtures" / "batch"
API_KEY = "sk-test-0123456789abcdef"
FIXED_TS = 1776432582
REAL_METADATA = {"ds_name": "测试任务", "ds_batch_finish_callback": "https://www.cnblogs.com", "ds_description": "任务描述"}


# ---------------------------------------------------------------------------- helpers
def _load_real():
    rows = [json.loads(l) for l in (FIXTURES / "real_samples.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]
    out = {"lines": [], "batches": {}, "lists": []}
    for r in rows:
        if r["kind"] == "batch-output-line":
            out["lines"].append(json.loads(r["raw_line"]))
        elif r["kind"] == "batch-object":
            out["batches"][r["parsed"]["status"]] = r["parsed"]
        elif r["kind"] == "list-object":
            out["lists"].append(r["parsed"])
    return out


REAL = _load_real()


def shape(obj, _key=None):
    """Structure of a JSON value: key order, nesting and types (None stays None).

    ``metadata`` is compared as a set of keys: the service echoes it in varying
    key order (the recorded create and retrieve responses differ).
    """
    if isinstance(obj, dict):
        items = [(k, shape(v, k)) for k, v in obj.items()]
        return sorted(items) if _key == "metadata" else items
    if isinstance(obj, list):
        return [shape(obj[0], _key)] if obj else []
    if obj is None:
        return None
    if isinstance(obj, bool):
        return "bool"
    if isinstance(obj, (int, float)):
        return "number"
    return type(obj).__name__


def client_for(server: FakeDashScope, *, max_retries: int = 0, timeout: float = 10.0, api_key: str = API_KEY) -> OpenAI:
    # trust_env=False: never route loopback traffic through an env-configured proxy.
    # verify=False only skips loading the CA bundle (~0.1 s per client): the fake
    # speaks plain HTTP on 127.0.0.1, so no TLS is involved either way.
    return OpenAI(
        api_key=api_key,
        base_url=server.base_url,
        max_retries=max_retries,
        timeout=timeout,
        http_client=openai.DefaultHttpxClient(trust_env=False, verify=False),
    )


def chat_line(cid, content="Hello!", model="qwen-plus", url="/v1/chat/completions", **body_extra):
    body = {
        "model": model,
        "messages": [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": content}],
    }
    body.update(body_extra)
    return {"custom_id": cid, "method": "POST", "url": url, "body": body}


def write_jsonl(path: pathlib.Path, lines) -> pathlib.Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        for line in lines:
            f.write((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n")
    return path


def upload(client: OpenAI, path: pathlib.Path):
    with open(path, "rb") as f:
        return client.files.create(file=f, purpose="batch")


def create_batch(client, file_id, endpoint="/v1/chat/completions", **kw):
    return client.batches.create(input_file_id=file_id, endpoint=endpoint, completion_window="24h", **kw)


def raw_retrieve(client, batch_id):
    """Retrieve through the SDK but return the exact JSON the server sent."""
    return client.batches.with_raw_response.retrieve(batch_id).http_response.json()


def run_to_end(client, batch_id, limit=50):
    statuses = []
    for _ in range(limit):
        b = client.batches.retrieve(batch_id)
        statuses.append(b.status)
        if b.status in ("completed", "failed", "expired", "cancelled"):
            return b, statuses
    raise AssertionError(f"batch never finished: {statuses}")


def read_jsonl_text(text: str):
    return [json.loads(l) for l in text.splitlines() if l.strip()]


@pytest.fixture
def server():
    with FakeDashScope(api_key=API_KEY, clock=lambda: FIXED_TS) as s:
        yield s


@pytest.fixture
def client(server):
    with client_for(server) as c:
        yield c


# The module-level helper also works as a fixture source.
fake_dashscope = fake_dashscope_fixture(api_key=API_KEY, steps=1)


# ---------------------------------------------------------------------------- fixtures sanity
def test_real_samples_fixture_is_complete():
    assert {"validating", "in_progress", "cancelling", "completed", "cancelled", "failed"} <= set(REAL["batches"])
    assert len(REAL["lines"]) == 2
    assert REAL["lists"][0]["data"] is None


# ---------------------------------------------------------------------------- happy path
def test_upload_create_and_lifecycle_to_completed(server, client, tmp_path):
    lines = [chat_line(f"req-{i}", f"question {i}", max_tokens=30 if i == 0 else None) for i in range(7)]
    for l in lines:  # drop the None max_tokens
        if l["body"].get("max_tokens") is None:
            l["body"].pop("max_tokens", None)
    path = write_jsonl(tmp_path / "in.jsonl", lines)

    f = upload(client, path)
    assert f.id.startswith("file-batch-")
    assert f.bytes == path.stat().st_size
    assert f.purpose == "batch" and f.filename == "in.jsonl" and f.status == "processed"
    assert server.files[f.id]["bytes"] == path.read_bytes()
    assert client.files.content(f.id).content == path.read_bytes()

    created = client.batches.with_raw_response.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", metadata=REAL_METADATA
    ).http_response.json()
    # Exactly the recorded create response's structure (keys, order, nulls).
    assert shape(created) == shape(REAL["batches"]["validating"])
    assert created["id"].startswith("batch_")
    assert created["status"] == "validating"
    assert created["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert created["errors"] is None and created["created_at"] == FIXED_TS
    batch_id = created["id"]

    seen = []
    for _ in range(5):
        raw = raw_retrieve(client, batch_id)
        seen.append((raw["status"], dict(raw["request_counts"]), raw["output_file_id"]))
        if raw["status"] == "in_progress":
            assert shape(raw) == shape(REAL["batches"]["in_progress"])
    assert seen == [
        ("in_progress", {"total": 7, "completed": 0, "failed": 0}, None),
        ("in_progress", {"total": 7, "completed": 4, "failed": 0}, None),
        ("in_progress", {"total": 7, "completed": 7, "failed": 0}, None),
        ("finalizing", {"total": 7, "completed": 7, "failed": 0}, None),
        ("completed", {"total": 7, "completed": 7, "failed": 0}, seen[-1][2]),
    ]
    final = raw_retrieve(client, batch_id)  # terminal: stays completed
    assert final["status"] == "completed"
    assert shape(final) == shape(REAL["batches"]["completed"])
    assert final["output_file_id"].startswith("file-batch_output-")
    assert final["error_file_id"] is None
    assert final["completed_at"] == final["finalizing_at"] == FIXED_TS

    batch = client.batches.retrieve(batch_id)  # typed SDK object parses fine
    assert batch.status == "completed" and batch.request_counts.completed == 7

    out = read_jsonl_text(client.files.content(batch.output_file_id).text)
    ids = [o["custom_id"] for o in out]
    assert sorted(ids) == sorted(l["custom_id"] for l in lines)
    assert ids != [l["custom_id"] for l in lines], "output must not come back in input order"
    by_id = {l["custom_id"]: l for l in lines}
    for o in out:
        assert shape(o) == shape(REAL["lines"][0]), o
        body = o["response"]["body"]
        usage = body["usage"]
        in_body = by_id[o["custom_id"]]["body"]
        assert usage["prompt_tokens"] == len(json.dumps(in_body["messages"])) // 4
        assert usage["completion_tokens"] == min(in_body.get("max_tokens", 50), 10 + zlib.crc32(o["custom_id"].encode()) % 40)
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert o["id"] == o["response"]["request_id"] and body["id"] == "chatcmpl-" + o["id"]
        assert body["model"] == "qwen-plus"
    # The output file is listed as a file too.
    assert client.files.retrieve(batch.output_file_id).bytes == len(server.files[batch.output_file_id]["bytes"])


def test_output_is_deterministic_for_a_seed(tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(str(i)) for i in range(10)])
    contents = []
    for _ in range(2):
        with FakeDashScope(api_key=API_KEY, seed=7, clock=lambda: FIXED_TS) as s, client_for(s) as c:
            b = create_batch(c, upload(c, path).id)
            done, _ = run_to_end(c, b.id)
            contents.append(c.files.content(done.output_file_id).content)
    assert contents[0] == contents[1]


def test_pluggable_token_counters_and_failing_lines(tmp_path):
    lines = [chat_line(f"c{i}") for i in range(5)]
    path = write_jsonl(tmp_path / "in.jsonl", lines)
    with FakeDashScope(
        api_key=API_KEY,
        prompt_tokens_fn=lambda body: 42,
        completion_tokens_fn=lambda cid, body: 7,
        fail_custom_ids={"c1", "c3"},
    ) as s, client_for(s) as c:
        b = create_batch(c, upload(c, path).id)
        done, _ = run_to_end(c, b.id)
        assert done.status == "completed"
        assert done.request_counts.total == 5
        assert done.request_counts.completed == 3
        assert done.request_counts.failed == 2
        assert done.error_file_id.startswith("file-batch_error-")
        out = read_jsonl_text(c.files.content(done.output_file_id).text)
        err = read_jsonl_text(c.files.content(done.error_file_id).text)
    assert sorted(o["custom_id"] for o in out) == ["c0", "c2", "c4"]
    assert all(o["response"]["body"]["usage"] == {"completion_tokens": 7, "prompt_tokens": 42, "total_tokens": 49} for o in out)
    assert sorted(e["custom_id"] for e in err) == ["c1", "c3"]
    for e in err:
        assert e["error"]["code"] == "InvalidParameter" and e["error"]["message"]
        assert e["response"]["status_code"] == 400


def test_default_token_functions():
    body = {"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 12}
    assert default_prompt_tokens(body) == len(json.dumps(body["messages"])) // 4
    assert default_completion_tokens("x", body) == min(12, 10 + zlib.crc32(b"x") % 40)
    assert default_completion_tokens("x", {"messages": []}) == min(50, 10 + zlib.crc32(b"x") % 40)


def test_batch_test_model_answers_fixed_text(fake_dashscope, tmp_path):
    path = write_jsonl(
        tmp_path / "t.jsonl", [chat_line(str(i), model="batch-test-model", url="/v1/chat/ds-test") for i in range(3)]
    )
    with client_for(fake_dashscope) as c:
        b = create_batch(c, upload(c, path).id, endpoint="/v1/chat/ds-test")
        done, statuses = run_to_end(c, b.id)
        assert statuses == ["in_progress", "in_progress", "finalizing", "completed"]  # steps=1
        out = read_jsonl_text(c.files.content(done.output_file_id).text)
    for o in out:
        body = o["response"]["body"]
        assert body["choices"][0]["message"]["content"] == "This is a test result."
        assert body["usage"] == {"completion_tokens": 6, "prompt_tokens": 20, "total_tokens": 26}
        assert body["model"] == "batch-test-model"


def test_embeddings_output(server, client, tmp_path):
    lines = [
        {"custom_id": "e1", "method": "POST", "url": "/v1/embeddings", "body": {"model": "text-embedding-v4", "input": "hello", "dimensions": 4}},
        {"custom_id": "e2", "method": "POST", "url": "/v1/embeddings", "body": {"model": "text-embedding-v4", "input": ["a", "b"], "dimensions": 4}},
    ]
    path = write_jsonl(tmp_path / "e.jsonl", lines)
    b = create_batch(client, upload(client, path).id, endpoint="/v1/embeddings")
    done, _ = run_to_end(client, b.id)
    out = {o["custom_id"]: o for o in read_jsonl_text(client.files.content(done.output_file_id).text)}
    body = out["e2"]["response"]["body"]
    assert body["object"] == "list"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" and len(d["embedding"]) == 4 for d in body["data"])
    assert set(body["usage"]) == {"prompt_tokens", "total_tokens"}
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"]
    assert out["e1"]["error"] is None


def test_upload_is_byte_exact(server, client, tmp_path):
    data = (json.dumps(chat_line("1", "你好！\r\n--boundary-like\r"), ensure_ascii=False) + "\r\n").encode("utf-8")
    p = tmp_path / "crlf 你好.jsonl"
    p.write_bytes(data)
    f = upload(client, p)
    assert server.files[f.id]["bytes"] == data
    assert client.files.content(f.id).content == data
    assert f.filename == "crlf 你好.jsonl"


# ---------------------------------------------------------------------------- validation
def test_url_not_found_fails_validation_with_line_numbers(server, client, tmp_path):
    lines = [chat_line("1"), chat_line("2", url="/v1/chat/completion"), chat_line("3"), chat_line("4", url="/v2/whatever")]
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    b = create_batch(client, upload(client, path).id, metadata=REAL_METADATA)
    raw = raw_retrieve(client, b.id)
    assert raw["status"] == "failed"
    assert shape(raw) == shape(REAL["batches"]["failed"])
    assert raw["errors"]["data"] == [
        {"code": "url_not_found", "message": "The provided url '/v1/chat/completion' is not supported by the Batch API.", "param": "url", "line": 2},
        {"code": "url_not_found", "message": "The provided url '/v2/whatever' is not supported by the Batch API.", "param": "url", "line": 4},
    ]
    assert raw["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert raw["failed_at"] == FIXED_TS and raw["in_progress_at"] is None
    assert raw["output_file_id"] is None and raw["error_file_id"] is None
    typed = client.batches.retrieve(b.id)  # stays failed
    assert typed.status == "failed"
    assert typed.errors.data[0].code == "url_not_found" and typed.errors.data[0].line == 2


def test_real_recorded_validation_failure_reproduced(server, client, tmp_path):
    # The recorded failure: a ds-test batch whose line used '/v1/chat/completion'.
    path = write_jsonl(tmp_path / "t.jsonl", [chat_line("1", model="batch-test-model", url="/v1/chat/completion")])
    b = create_batch(client, upload(client, path).id, endpoint="/v1/chat/ds-test", metadata=REAL_METADATA)
    raw = raw_retrieve(client, b.id)
    real = REAL["batches"]["failed"]
    assert raw["errors"] == real["errors"]
    assert shape(raw) == shape(real)


@pytest.mark.parametrize(
    "lines, endpoint, code, line_no",
    [
        ([chat_line("1", model="batch-test-model")], "/v1/chat/completions", "mismatched_test_url", 1),
        ([chat_line("1"), chat_line("1")], "/v1/chat/completions", "duplicate_custom_id", 2),
        ([chat_line("1"), chat_line("2", model="qwen-max")], "/v1/chat/completions", "mismatched_model", 2),
        ([chat_line("1"), "{not json"], "/v1/chat/completions", "invalid_json_line", 2),
        ([{"custom_id": "1", "method": "POST", "url": "/v1/chat/completions"}], "/v1/chat/completions", "missing_required_parameter", 1),
        ([chat_line("1")], "/v1/embeddings", "mismatched_endpoint", 1),
    ],
)
def test_other_validation_failures(server, client, tmp_path, lines, endpoint, code, line_no):
    path = write_jsonl(tmp_path / "bad.jsonl", lines)
    b = create_batch(client, upload(client, path).id, endpoint=endpoint)
    got = client.batches.retrieve(b.id)
    assert got.status == "failed"
    assert got.errors.data[0].code == code
    assert got.errors.data[0].line == line_no


def test_force_validation_failure_helper(server, client, tmp_path):
    b = create_batch(client, upload(client, write_jsonl(tmp_path / "ok.jsonl", [chat_line("1")])).id)
    server.force_validation_failure(b.id, "too_many_tasks", "Too many.", line=None, param=None)
    got = client.batches.retrieve(b.id)
    assert got.status == "failed" and got.errors.data[0].code == "too_many_tasks"


@pytest.mark.parametrize("window, ok", [("24h", True), ("336h", True), ("1d", True), ("14d", True), ("23h", False),
                                        ("15d", False), ("337h", False), ("24", False), ("1.5d", False), ("24H", False)])
def test_completion_window_validation(server, client, tmp_path, window, ok):
    fid = upload(client, write_jsonl(tmp_path / "ok.jsonl", [chat_line("1")])).id
    if ok:
        b = client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window=window)
        assert b.completion_window == window
    else:
        with pytest.raises(openai.BadRequestError) as ei:
            client.batches.create(input_file_id=fid, endpoint="/v1/chat/completions", completion_window=window)
        assert ei.value.status_code == 400
        assert server.batches == {}


def test_create_rejects_bad_metadata_and_unknown_file(server, client, tmp_path):
    fid = upload(client, write_jsonl(tmp_path / "ok.jsonl", [chat_line("1")])).id
    with pytest.raises(openai.BadRequestError):
        create_batch(client, fid, metadata={"ds_name": "x" * 101})
    with pytest.raises(openai.BadRequestError):
        create_batch(client, fid, metadata={"ds_description": "x" * 201})
    create_batch(client, fid, metadata={"ds_name": "x" * 100, "ds_description": "y" * 200})
    with pytest.raises(openai.BadRequestError):
        create_batch(client, "file-batch-doesnotexist")
    with pytest.raises(openai.BadRequestError):
        create_batch(client, fid, endpoint="/v1/responses")
    assert len(server.batches) == 1


def test_upload_rejects_other_purposes_and_unknown_content(server, client, tmp_path):
    path = write_jsonl(tmp_path / "ok.jsonl", [chat_line("1")])
    with open(path, "rb") as f, pytest.raises(openai.BadRequestError):
        client.files.create(file=f, purpose="assistants")
    assert server.files == {}
    with pytest.raises(openai.NotFoundError) as ei:
        client.files.content("file-batch-nope")
    assert ei.value.body["code"] == "not_found"
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")


# ---------------------------------------------------------------------------- auth
def test_wrong_or_missing_key_is_401_and_never_echoed(server, tmp_path):
    path = write_jsonl(tmp_path / "ok.jsonl", [chat_line("1")])
    with client_for(server, api_key="sk-wrong-secret") as bad:
        with pytest.raises(openai.AuthenticationError) as ei:
            upload(bad, path)
        with pytest.raises(openai.AuthenticationError):
            bad.batches.list()
    err = ei.value
    assert err.status_code == 401
    assert err.body["code"] == "invalid_api_key"
    assert err.body["message"] and err.body["type"]
    text = err.response.text
    assert "sk-wrong-secret" not in text and API_KEY not in text
    assert server.files == {}
    assert [r.status for r in server.requests] == [401, 401]
    assert all(API_KEY not in repr(r) for r in server.requests)


# ---------------------------------------------------------------------------- cancel / list
def test_cancel_before_any_request_finished_matches_real_cancelled(server, client, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("1"), chat_line("2")])
    b = create_batch(client, upload(client, path).id, metadata=REAL_METADATA)
    assert client.batches.retrieve(b.id).status == "in_progress"
    cancelling = client.batches.with_raw_response.cancel(b.id).http_response.json()
    assert cancelling["status"] == "cancelling"
    assert shape(cancelling) == shape(REAL["batches"]["cancelling"])
    assert cancelling["cancelling_at"] is None  # as recorded
    assert client.batches.cancel(b.id).status == "cancelling"  # idempotent while cancelling
    raw = raw_retrieve(client, b.id)
    assert raw["status"] == "cancelled"
    assert shape(raw) == shape(REAL["batches"]["cancelled"])
    assert raw["request_counts"] == {"total": 2, "completed": 0, "failed": 2}
    assert raw["cancelling_at"] == raw["cancelled_at"] == FIXED_TS
    assert raw["output_file_id"] is None
    err = read_jsonl_text(client.files.content(raw["error_file_id"]).text)
    assert sorted(e["custom_id"] for e in err) == ["1", "2"]
    assert all(e["error"]["code"] for e in err)
    assert client.batches.retrieve(b.id).status == "cancelled"


def test_cancel_midway_keeps_finished_requests(server, client, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(str(i)) for i in range(4)])
    b = create_batch(client, upload(client, path).id)
    client.batches.retrieve(b.id)  # in_progress, 0 done
    mid = client.batches.retrieve(b.id)  # in_progress, 2 done
    assert mid.request_counts.completed == 2
    assert client.batches.cancel(b.id).status == "cancelling"
    done = client.batches.retrieve(b.id)
    assert done.status == "cancelled"
    assert (done.request_counts.total, done.request_counts.completed, done.request_counts.failed) == (4, 2, 2)
    out = read_jsonl_text(client.files.content(done.output_file_id).text)
    err = read_jsonl_text(client.files.content(done.error_file_id).text)
    assert sorted(o["custom_id"] for o in out) == ["0", "1"]  # processed in input order
    assert sorted(e["custom_id"] for e in err) == ["2", "3"]
    assert all(o["error"] is None for o in out)
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(b.id)  # cannot cancel a finished batch


def test_list_pagination_filter_and_empty(server, client, tmp_path):
    assert list(client.batches.list()) == []  # real service sends "data": null here
    raw_empty = client.batches.with_raw_response.list().http_response.json()
    assert raw_empty == REAL["lists"][0]

    fid = upload(client, write_jsonl(tmp_path / "in.jsonl", [chat_line("1")])).id
    ids = [create_batch(client, fid).id for _ in range(3)]
    client.batches.retrieve(ids[0])  # -> in_progress

    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == [ids[2], ids[1]]  # newest first
    assert page.has_more is True
    raw = client.batches.with_raw_response.list(limit=2).http_response.json()
    assert raw["first_id"] == ids[2] and raw["last_id"] == ids[1] and raw["object"] == "list"
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # auto-pagination via `after`
    nxt = client.batches.list(limit=2, after=ids[1])
    assert [b.id for b in nxt.data] == [ids[0]] and nxt.has_more is False

    filtered = client.batches.list(extra_query={"status": "in_progress"})
    assert [b.id for b in filtered.data] == [ids[0]]
    for bad in (0, 101):
        with pytest.raises(openai.BadRequestError):
            client.batches.list(limit=bad)
    # list never advances a batch
    assert [server.batches[i]["status"] for i in ids] == ["in_progress", "validating", "validating"]


def test_set_status_expired_writes_partial_files(server, client, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line(str(i)) for i in range(4)])
    b = create_batch(client, upload(client, path).id)
    client.batches.retrieve(b.id)
    client.batches.retrieve(b.id)
    server.set_status(b.id, "expired")
    got = client.batches.retrieve(b.id)
    assert got.status == "expired" and got.expired_at == FIXED_TS
    assert got.request_counts.completed == 2 and got.request_counts.failed == 2
    assert got.output_file_id and got.error_file_id


def test_set_status_completed_skips_the_lifecycle(server, client, tmp_path):
    b = create_batch(client, upload(client, write_jsonl(tmp_path / "in.jsonl", [chat_line("a"), chat_line("b")])).id)
    server.set_status(b.id, "completed")
    got = client.batches.retrieve(b.id)
    assert got.status == "completed" and got.request_counts.completed == 2
    assert sorted(o["custom_id"] for o in server.file_lines(got.output_file_id)) == ["a", "b"]


# ---------------------------------------------------------------------------- fault injection
def test_429_then_success_is_retried_by_sdk(server, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("1")])
    with client_for(server, max_retries=2) as c:
        fid = upload(c, path).id
        server.inject("POST", "/batches", "429")
        b = create_batch(c, fid)
    assert b.status == "validating"
    posts = [r for r in server.requests if r.method == "POST" and r.path == "/batches"]
    assert [r.status for r in posts] == [429, 200]
    assert server.count("POST", "/batches") == 2
    assert list(server.batches) == [b.id]
    assert server.pending_faults == []


def test_429_body_and_headers(server, client):
    server.inject("GET", "/batches", "429")
    with pytest.raises(openai.RateLimitError) as ei:
        client.batches.list()
    err = ei.value
    assert err.status_code == 429
    assert err.response.headers["retry-after"] == "0"
    assert "retry-after-ms" in err.response.headers
    assert err.body["code"].startswith("Throttling")


def test_500_then_success_is_retried_by_sdk(server, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("1")])
    server.inject("POST", "/files", "500")
    with client_for(server, max_retries=2) as c:
        f = upload(c, path)  # multipart body is replayed on retry
        assert c.files.content(f.id).content == path.read_bytes()
        b = create_batch(c, f.id)
        server.inject("GET", f"/batches/{b.id}", "500", times=2)
        assert c.batches.retrieve(b.id).status == "in_progress"
    assert [r.status for r in server.requests if r.path == "/files"] == [500, 200]
    assert [r.status for r in server.requests if r.path == f"/batches/{b.id}"] == [500, 500, 200]
    assert len(server.files) == 1


def test_500_exhausts_retries(server, client):
    server.inject("*", "/batches", "503", times=5)
    with pytest.raises(openai.InternalServerError):
        client.batches.list()
    assert server.count("GET", "/batches") == 1  # max_retries=0


def test_drop_after_commit_raises_but_batch_exists(server, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("1")])
    with client_for(server, max_retries=0) as c:
        fid = upload(c, path).id
        server.inject("POST", "/batches", "drop_after_commit")
        with pytest.raises(openai.APIConnectionError):
            create_batch(c, fid, metadata={"ds_name": "run-1"})
        assert len(server.batches) == 1
        (only,) = server.batches.values()
        assert only["input_file_id"] == fid and only["metadata"] == {"ds_name": "run-1"}
        # A crash-recovering client can find it again through list.
        assert [b.id for b in c.batches.list().data] == [only["id"]]
    assert server.requests[-2:] == [("POST", "/batches", None), ("GET", "/batches", 200)]


def test_drop_after_commit_with_sdk_retries_creates_duplicates(server, tmp_path):
    """Why batchplan needs its own idempotency: the SDK blindly retries a lost answer."""
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("1")])
    with client_for(server, max_retries=2) as c:
        fid = upload(c, path).id
        server.inject("POST", "/batches", "drop_after_commit")
        b = create_batch(c, fid)
    assert len(server.batches) == 2 and b.id in server.batches


def test_drop_before_commit_raises_and_nothing_happens(server, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("1")])
    with client_for(server, max_retries=0) as c:
        fid = upload(c, path).id
        server.inject("POST", "/batches", "drop_before_commit")
        with pytest.raises(openai.APIConnectionError):
            create_batch(c, fid)
        assert server.batches == {}
        b = create_batch(c, fid)  # next attempt works
    assert list(server.batches) == [b.id]


def test_hang_makes_client_time_out(server, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("1")])
    with client_for(server, max_retries=0, timeout=0.5) as c:
        fid = upload(c, path).id
        server.inject("POST", "/batches", "hang", seconds=30)
        with pytest.raises(openai.APITimeoutError):
            create_batch(c, fid)
        assert server.batches == {}
    # stop() (fixture teardown) releases the hanging handler at once.


def test_hang_after_commit_times_out_but_batch_exists(server, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("1")])
    with client_for(server, max_retries=0, timeout=0.5) as c:
        fid = upload(c, path).id
        server.inject("POST", "/batches", "hang_after_commit", seconds=30)
        with pytest.raises(openai.APITimeoutError):
            create_batch(c, fid)
    assert len(server.batches) == 1


def test_stop_releases_hang_quickly(tmp_path):
    import threading
    import time

    s = FakeDashScope(api_key=API_KEY).start()
    c = client_for(s, max_retries=0, timeout=30)
    s.inject("GET", "/batches", "hang", seconds=60)
    errors = []

    def call():
        try:
            c.batches.list()
        except openai.APIError as e:  # connection closed by stop()
            errors.append(e)

    t = threading.Thread(target=call)
    t.start()
    for _ in range(500):  # wait until the request reached the server and hangs
        if s.count("GET", "/batches"):
            break
        time.sleep(0.01)
    t0 = time.monotonic()
    s.stop()
    t.join(10)
    c.close()
    assert not t.is_alive()
    assert time.monotonic() - t0 < 5
    assert len(errors) == 1 and isinstance(errors[0], openai.APIConnectionError)


def test_inject_rejects_unknown_kind(server):
    with pytest.raises(ValueError):
        server.inject("GET", "/batches", "explode")


def test_concurrent_requests_are_logged_safely(server, client, tmp_path):
    path = write_jsonl(tmp_path / "in.jsonl", [chat_line("1")])
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda _: upload(client, path).id, range(16)))
    assert len(set(ids)) == 16 and len(server.files) == 16
    assert server.count("POST", "/files", 200) == 16
