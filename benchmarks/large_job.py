"""A whole ``batchplan run`` of a large generated job against the fake server's instant mode.

Generates N small qwen-plus requests (default 2,000,000) in one file, starts
FakeDashScope (``instant=True``: a batch ends on its first retrieve) in a
process of its own, runs ``batchplan run FILE --out DIR --yes --poll 0`` as a
child process and prints its wall time, its peak RSS (the job's process only,
not the server's) and the seconds per step from DIR/report.json: plan +
split (``prepare``), submit + follow + collect (``follow``), the external
merge (``merge``), the report. The job's memory should stay flat with N:
run it at two sizes and compare the peaks.

    python benchmarks/large_job.py                 # 2,000,000 lines
    python benchmarks/large_job.py --lines 200000  # a tenth, to compare the peak RSS
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEY = "sk-benchmark-not-a-real-key"

SERVER = """
import sys
sys.path.insert(0, {root!r})
from tests.fakes.dashscope_server import FakeDashScope
server = FakeDashScope(api_key={key!r}, instant=True).start()
print(server.base_url, flush=True)
sys.stdin.read()
server.stop()
"""


def generate(path: str, lines: int) -> int:
    """``lines`` requests, each with its own question; the bytes written."""
    with open(path, "wb") as out:
        for i in range(lines):
            out.write(b'{"custom_id":"r%d","method":"POST","url":"/v1/chat/completions","body":{"model":"qwen-plus",'
                      b'"max_tokens":16,"messages":[{"role":"user","content":"Question number %d: what is %d + %d?"}]}}\n'
                      % (i, i, i, i % 97))
    return os.path.getsize(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--keep", action="store_true", help="keep the job folder (its path is printed)")
    args = parser.parse_args(argv)

    scratch = tempfile.mkdtemp(prefix="batchplan-large-job-")
    source = os.path.join(scratch, "job.jsonl")
    started = time.perf_counter()
    size = generate(source, args.lines)
    print(f"generated {args.lines:,} lines ({size / 1e6:,.0f} MB) in {time.perf_counter() - started:.1f} s")

    server = subprocess.Popen([sys.executable, "-c", SERVER.format(root=ROOT, key=KEY)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        base_url = server.stdout.readline().strip()
        env = dict(os.environ, DASHSCOPE_API_KEY=KEY, DASHSCOPE_BASE_URL=base_url, NO_PROXY="127.0.0.1",
                   BATCHPLAN_HOME=os.path.join(scratch, "home"), PYTHONPATH=ROOT)
        out = os.path.join(scratch, "out")
        started = time.perf_counter()
        job = subprocess.run([sys.executable, "-m", "batchplan", "run", source, "--out", out, "--yes",
                              "--poll", "0", "-q"], env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        wall = time.perf_counter() - started
        # The server is still running, so the children's peak is the job's.
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    finally:
        server.stdin.close()
        server.wait(timeout=60)
    if job.returncode != 0:
        print(job.stderr[-2000:], file=sys.stderr)
        return 1
    with open(os.path.join(out, "report.json"), encoding="utf-8") as handle:
        doc = json.load(handle)
    print(f"batchplan run: exit {job.returncode}, {len(doc['parts'])} parts, "
          f"{doc['output']['lines']:,} lines merged into output.jsonl")
    print(f"wall time {wall:.1f} s ({args.lines / wall:,.0f} requests/s); peak RSS of the job {peak_mb:,.0f} MB")
    print("seconds per step: " + ", ".join(f"{k} {v:.1f}" for k, v in doc["seconds"].items()))
    if args.keep:
        print(f"job folder: {out}")
    else:
        import shutil

        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
