"""``compare --cluster``: byte ranges cut at line boundaries, planned on a
Dask LocalCluster of 2 worker processes, merge into the plan of a local run,
even when a worker dies mid-run."""

import io
import json
import os
import random
import signal
import subprocess
import sys
import threading
import uuid

import pytest

from batchplan.planning import cluster as cluster_module
from batchplan.planning.planner import plan_files
from batchplan.planning.reading import BOM, InputError, read_blocks, read_range
from batchplan.planning.sampling import plan_sample
from tests.conftest import line, modules_imported
from tests.planning.test_performance_paths import _lines

distributed = pytest.importorskip("distributed")

WAIT = 60  # seconds: every wait in these tests is bounded


# -- byte ranges ------------------------------------------------------------------

def _random_file(rng):
    pieces = [b"", b" ", b"\t", b"abc", "中文，".encode(), b'{"a": 1}']
    parts = [rng.choice(pieces) * rng.randint(1, 30) + rng.choice([b"\n", b"\r\n"]) for _ in range(rng.randint(0, 40))]
    return (BOM if rng.random() < 0.3 else b"") + b"".join(parts) + rng.choice([b"", b"tail", b"\n", b"\r\n"])


def test_ranges_cut_anywhere_partition_the_lines():
    """Whatever the cut points and block size, the ranges' lines, renumbered
    after the lines of the ranges before, are the file's lines: none lost,
    none doubled, each with its own number."""
    rng = random.Random(9)
    checked = 0
    for _ in range(3000):
        data = _random_file(rng)
        want = [(l.number, l.raw) for b in read_blocks(io.BytesIO(data)) for l in b.lines()]
        cuts = sorted({0, len(data), *(rng.randint(0, len(data)) for _ in range(rng.randint(0, 12)))})
        got, before = [], 0
        for start, end in zip(cuts, cuts[1:]):
            count = 0
            for block in read_range(io.BytesIO(data), start, end, rng.randint(1, 16)):
                got += [(before + l.number, l.raw) for l in block.lines()]
                count += block.line_count
            before += count
        assert got == want, (data, cuts)
        assert before == sum(b.line_count for b in read_blocks(io.BytesIO(data)))
        checked += len(cuts) > 3 and len(want) > 3
    assert checked > 1000


def test_units_cover_every_byte_once():
    units = cluster_module.units(["a", "b", "c"], [100, 0, 35], range_bytes=40)
    assert [(u.path, u.start, u.end) for u in units] == [("a", 0, 40), ("a", 40, 80), ("a", 80, 100), ("b", 0, 0), ("c", 0, 35)]
    assert all(u.label == u.path and os.path.isabs(u.source) for u in units)
    assert cluster_module.units(["a"], [10])[0].label == "a"  # one file too: rows and errors name it


# -- on a LocalCluster ------------------------------------------------------------

def _job(folder, rng):
    """Two files of mixed requests, with invalid and blank lines, CRLF
    endings and lines that warn (thinking by default, remote images counted at an assumed size)."""
    paths = []
    for i, count in enumerate((500, 120)):
        lines = _lines(rng, count, 1 + 1000 * i)
        for k in range(0, len(lines), 37):
            lines[k] = line(f"t{k}", model="qwq-plus")
        for k in range(5, len(lines), 53):
            parts = [{"type": "text", "text": "what is it?"}, {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]
            lines[k] = line(f"m{k}", model="qwen-vl-max", messages=[{"role": "user", "content": parts}])
        path = folder / f"part-{i}.jsonl"
        path.write_bytes(b"".join(t.encode() + (b"\r\n" if n % 5 == 0 else b"\n") for n, t in enumerate(lines)))
        paths.append(str(path))
    return paths


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    paths = _job(tmp_path_factory.mktemp("cluster"), random.Random(42))
    rows = []
    local = plan_files(paths, workers=1, on_request=rows.append)
    assert local.plan.invalid > 5 and {"thinking_by_default", "image_size_assumed"} <= set(local.plan.warnings)
    return paths, local, rows


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        with distributed.Client(cluster) as c:
            c.wait_for_workers(2, timeout=WAIT)
            yield c


def _same(result, rows, local, local_rows):
    assert result.plan == local.plan and result.files == local.files
    assert rows == local_rows  # every per-request row, with its line number and file
    assert [(e.file, e.line) for e in result.plan.errors] == [(e.file, e.line) for e in local.plan.errors]


def test_cluster_gives_the_plan_of_a_local_run(job, client):
    paths, local, local_rows = job
    rows = []
    result = cluster_module.plan_files_on_cluster(paths, client=client, range_bytes=50_000, on_request=rows.append)
    assert len(cluster_module.units(paths, [os.path.getsize(p) for p in paths], 50_000)) > 8
    _same(result, rows, local, local_rows)
    workers = client.run(os.getpid)
    assert len(workers) == 2 and os.getpid() not in workers.values()  # counted in other processes


def test_a_sample_on_the_cluster_is_the_sample_in_one_process(job, client):
    paths = job[0]

    def estimate(**where):
        rows = []
        result = plan_sample(paths, 0.2, 3, on_request=rows.append, **where)
        return result.sample.document(), rows, result.plan, result.files

    local = estimate(workers=1)
    assert not local[0]["exact"] and local[0]["sampled_lines"] > 20
    assert estimate(client=client) == local


def test_a_file_a_worker_cannot_read_is_named(job, client, monkeypatch, tmp_path):
    """The client sees a file that the workers do not (no shared path)."""
    missing = str(tmp_path / "only-on-the-client.jsonl")
    monkeypatch.setattr(cluster_module, "_input_size", lambda name: 1000 if name == missing else os.path.getsize(name))
    with pytest.raises(InputError) as error:
        cluster_module.plan_files_on_cluster([job[0][0], missing], client=client)
    message = str(error.value)
    assert message.startswith(f"{missing}: the Dask worker at tcp://") and "cannot read it (no such file)" in message
    assert "shared file system" in message and "\n" not in message


# Run by the workers (this module is importable there: spawned workers get
# the test process's sys.path). Blocks until the test says go, so the test
# knows which task runs where when it kills a worker.
def gated_plan_range(settings, unit, keep_rows, run_id):
    started = distributed.Queue(f"started-{run_id}")
    started.put(distributed.get_worker().address, timeout=WAIT)
    if not distributed.Event(f"go-{run_id}").wait(timeout=WAIT):
        raise TimeoutError("the test never said go")
    return cluster_module.plan_range(settings, unit, keep_rows)


def test_a_worker_killed_mid_run_loses_and_doubles_no_line(job):
    paths, local, local_rows = job
    run_id = uuid.uuid4().hex
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=WAIT)
        started = distributed.Queue(f"started-{run_id}", client=c)
        go = distributed.Event(f"go-{run_id}", client=c)
        task = lambda settings, unit, keep_rows: gated_plan_range(settings, unit, keep_rows, run_id)  # noqa: E731
        out, rows = {}, []

        def plan():
            try:
                out["result"] = cluster_module.plan_files_on_cluster(paths, client=c, range_bytes=50_000,
                                                                     on_request=rows.append, task=task)
            except BaseException as exc:  # shown by the assertion below
                out["error"] = exc

        runner = threading.Thread(target=plan, daemon=True)
        runner.start()
        busy = {started.get(timeout=WAIT), started.get(timeout=WAIT)}  # one task on each worker, held
        assert len(busy) == 2
        pids = c.run(os.getpid)
        victim = sorted(busy)[0]
        os.kill(pids[victim], signal.SIGKILL)
        go.set()
        runner.join(timeout=3 * WAIT)
        assert not runner.is_alive() and "error" not in out, out.get("error")
        units = len(cluster_module.units(paths, [os.path.getsize(p) for p in paths], 50_000))
        assert started.qsize() + 2 > units  # the killed worker's task ran again
    _same(out["result"], rows, local, local_rows)


# -- the command line ---------------------------------------------------------------

def test_cluster_from_the_environment_gives_the_local_json(job):
    paths, _, _ = job
    local = subprocess.run([sys.executable, "-m", "batchplan", "compare", "--json", *paths], capture_output=True, text=True)
    env = {**os.environ, "BATCHPLAN_CLUSTER": "local"}
    on_cluster = subprocess.run([sys.executable, "-m", "batchplan", "compare", "--json", "--workers", "2", *paths],
                                capture_output=True, text=True, env=env, timeout=3 * WAIT)
    assert on_cluster.returncode == local.returncode == 1, on_cluster.stderr  # some lines are invalid
    assert json.loads(on_cluster.stdout) == json.loads(local.stdout)
    assert on_cluster.stderr == local.stderr  # the same invalid lines and warnings, nothing from Dask


def test_cluster_gives_the_local_real_time_verdict(job, run):
    """Prefix statistics (--cache) and image assumptions travel to the
    workers: the real-time side and the verdict are those of a local run."""
    paths = job[0]
    args = ["compare", "--json", "--cache", "expected", "--free-quota", "--image-size", "640x480", *paths]
    local = json.loads(run(*args, "--workers", "1").stdout)
    on_cluster = json.loads(run(*args, "--cluster", "local", "--workers", "2").stdout)
    assert on_cluster == local
    assert local["realtime"]["cache"] == "expected" and local["realtime"]["verdict"]
    assert any(m["cache_hit_tokens"] not in (None, "0") for m in local["realtime"]["models"])


def test_sample_with_cluster_local_from_the_command_line(job, run, monkeypatch):
    from batchplan.planning import sampling

    monkeypatch.setattr(sampling, "MIN_SAMPLE_BYTES", 0)  # these files are under the floor
    paths = job[0]
    args = ["compare", "--json", "--sample", "0.2", "--seed", "2", *paths]
    local = run(*args, "--workers", "1")
    on_cluster = run(*args, "--cluster", "local", "--workers", "2")
    assert on_cluster.exit_code == local.exit_code and json.loads(on_cluster.stdout) == json.loads(local.stdout)
    assert not json.loads(local.stdout)["sample"]["exact"]


def test_cluster_without_dask_says_how_to_install_it(job, run, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed raises ImportError
    result = run("compare", "--cluster", "local", job[0][1])
    assert result.exit_code == 2
    assert result.stderr.strip() == "batchplan: error: --cluster needs Dask: pip install 'batchplan[cluster]'"


def test_help_says_workers_share_the_path():
    out = subprocess.run([sys.executable, "-m", "batchplan", "compare", "--help"], capture_output=True, text=True).stdout
    text = " ".join(out.split())
    assert "--cluster ADDRESS" in text and "BATCHPLAN_CLUSTER" in text
    assert "Workers read the files from the same path as this machine (a shared file system)" in text


def test_without_cluster_nothing_of_dask_is_imported(tmp_path):
    path = tmp_path / "tiny.jsonl"
    path.write_text(line("1") + "\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "BATCHPLAN_CLUSTER"}
    imported = modules_imported([["compare", "--sample", "0.5", path], ["compare", path]],
                                ("dask", "distributed", "tornado", "batchplan.planning.cluster"), env)
    assert imported == []
