"""Work per request, in CPU instructions: a measure a busy host does not change.

    python benchmarks/instructions.py [--kind unique|shared] [--lines 1000]

Runs ``batchplan compare --workers 1`` and ``plain.py`` under valgrind's
callgrind on the first N lines of a generated file (benchmarks/generate.py,
at scale 0.1) and on its first line, and prints the instructions per request
(the difference, divided by N - 1), start-up (the 1-line run) and the part
spent inside tiktoken's encoder. Needs valgrind; each run takes 10-60 s.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import generate  # noqa: E402
from run import batchplan_command  # noqa: E402

TOKENIZER = "CoreBPE>::__pymethod_encode"  # tiktoken's encode entry points, inclusive


def callgrind(command: list[str], out: str) -> tuple[int, int]:
    """Total instructions of ``command``, and those inside tiktoken's encoder."""
    subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}"] + command,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    report = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out],
                            check=True, capture_output=True, text=True).stdout
    total = encoder = 0
    for line in report.splitlines():
        match = re.match(r"\s*([\d,]+) \(", line)
        if not match:
            continue
        count = int(match.group(1).replace(",", ""))
        if "PROGRAM TOTALS" in line:
            total = count
        elif TOKENIZER in line and "[" in line:
            encoder += count
    return total, encoder


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", default="unique", choices=("unique", "shared"))
    parser.add_argument("--lines", type=int, default=1000)
    args = parser.parse_args(argv)
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed")
    source = generate.generate(args.kind, 0.1)
    with tempfile.TemporaryDirectory() as folder:
        many, one = os.path.join(folder, "many.jsonl"), os.path.join(folder, "one.jsonl")
        with open(source, "rb") as handle, open(many, "wb") as a, open(one, "wb") as b:
            for i, line in enumerate(handle):
                if i >= args.lines:
                    break
                a.write(line)
                if i == 0:
                    b.write(line)
        commands = {
            "batchplan": batchplan_command() + ["compare", "--json", "--workers", "1"],
            "plain": [sys.executable, os.path.join(HERE, "plain.py")],
        }
        for name, command in commands.items():
            total, encoder = callgrind(command + [many], os.path.join(folder, "many.out"))
            start, start_encoder = callgrind(command + [one], os.path.join(folder, "one.out"))
            n = args.lines - 1
            print(f"{name:9s} per request {(total - start) / n / 1e6:.3f} M instructions "
                  f"(tiktoken's encoder {(encoder - start_encoder) / n / 1e6:.3f} M); start-up {start / 1e9:.2f} G")
    return 0


if __name__ == "__main__":
    sys.exit(main())
