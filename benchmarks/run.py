"""Benchmark: ``batchplan compare`` against the plain approach (plain.py).

    python benchmarks/run.py            # 130 MB files + a 10-line file
    python benchmarks/run.py --full     # also the 500 MB file (generated once, in about 15 s)
    python benchmarks/run.py --quick    # files at 1/10 size, for a quick look
    python benchmarks/run.py --check    # also check that the counts agree
    python benchmarks/run.py --only cluster,sample   # only the large-job variants
    python benchmarks/run.py --only engines,cache    # tokenizer engines; --cache expected against plain

Besides the plain script, it times two variants of batchplan against its own
full local count, on the 500 MB file with --full (else the unique-content
file): ``--cluster local`` (a Dask LocalCluster on this machine; --check: the
same JSON plan, or exit 1) and ``--sample 0.01`` (--check prints whether its
interval holds the full count; a 95% interval misses one run in twenty, so
that never fails the run).

Both commands run as whole processes, side by side: the runs alternate
(A B B A ...), the median wall time of each is kept, and the ratio is
plain / batchplan. Peak memory is the largest resident set of any one process
(``ru_maxrss`` from ``wait4``), and, in one more untimed run of batchplan, the
peak of the summed proportional set size (PSS: shared pages split between the
processes sharing them) of its whole process tree, sampled every 0.1 s. It
prints figures and never fails on time; ``--check`` exits 1 when a count
differs.

``engines`` times ``compare`` with each tokenizer engine installed
(BATCHPLAN_TOKENIZER=tiktoken, =fastokens) on the unique-content and
shared-prompt files, and with each the floor (benchmarks/floor.py: one
process that only parses each line and encodes its contents); it prints the
floor's time divided by the cores over compare's time, the share of what that
many processes of the engine could do at best. --check: each engine's JSON
plan is identical, and so are the floor's counts. ``cache`` times
``compare --cache expected`` against plain ``compare`` on the same files
(target: at most 1.3x); --check: the same prompt tokens.

Generated files are kept in benchmarks/data/ (git-ignored) and reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import generate  # noqa: E402

ENGINES = ("tiktoken", "fastokens")  # BATCHPLAN_TOKENIZER values (planning/tokens.py)
CACHE_TARGET = 1.3  # --cache expected costs at most this many times plain compare

# kind: (what the issue asks of it, minimum speed-up)
TARGETS = {
    "unique": ("unique content", 1.7),
    "shared": ("shared system prompt + few-shot", 4.0),
    "large": ("500 MB file", None),
    "tiny": ("10 lines: start-up", 1.5),
}
RSS_LIMIT_MB = 200


def batchplan_command() -> list[str]:
    script = os.path.join(os.path.dirname(sys.executable), "batchplan")
    if os.path.exists(script):
        return [script]
    found = shutil.which("batchplan")
    return [found] if found else [sys.executable, "-m", "batchplan"]


def _children(pid: int) -> list[int]:
    out = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                out += [int(c) for c in handle.read().split()]
    except OSError:
        pass
    return out


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class TreeMemory(threading.Thread):
    """Samples the summed PSS of a process and its descendants (Linux only)."""

    def __init__(self, pid: int, every: float = 0.1):
        super().__init__(daemon=True)
        self.pid = pid
        self.every = every
        self.peak_kb = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            pids, todo = [], [self.pid]
            while todo:
                pid = todo.pop()
                pids.append(pid)
                todo += _children(pid)
            self.peak_kb = max(self.peak_kb, sum(_pss_kb(p) for p in pids))
            self.done.wait(self.every)


def cpu_ticks() -> tuple[int, int] | None:
    """(busy, stolen) clock ticks of all CPUs so far, from /proc/stat (Linux)."""
    try:
        with open("/proc/stat") as handle:
            fields = [int(x) for x in handle.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return user + nice + system + irq + softirq, steal


def run_once(command: list[str], tree_memory: bool = False, env: dict | None = None) -> dict:
    """Run ``command``; its wall time, peak RSS of any one process, its
    output, how much CPU other processes used meanwhile (they skew the
    timing), and, when asked, the peak PSS of the process tree. Sampling PSS
    takes CPU from the command, so timed runs do not sample."""
    ticks = cpu_ticks()
    start = time.perf_counter()
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=dict(os.environ, **env) if env else None)
    sampler = TreeMemory(child.pid) if tree_memory and os.path.exists("/proc/self/smaps_rollup") else None
    if sampler:
        sampler.start()
    reader = {}
    # Drain both pipes while the child runs, so it never blocks on a full pipe.
    threads = [threading.Thread(target=lambda k=k, s=s: reader.__setitem__(k, s.read()))
               for k, s in (("out", child.stdout), ("err", child.stderr))]
    for t in threads:
        t.start()
    _, status, usage = os.wait4(child.pid, 0)
    seconds = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join()
    if sampler:
        sampler.done.set()
        sampler.join()
    # Linux reports ru_maxrss in KB (macOS in bytes).
    rss_kb = usage.ru_maxrss / 1024 if sys.platform == "darwin" else usage.ru_maxrss
    cpu = usage.ru_utime + usage.ru_stime
    other = stolen = None
    after = cpu_ticks()
    if ticks and after:
        hz = os.sysconf("SC_CLK_TCK")
        # CPU seconds used by everything else, in cores on average.
        other = max(0.0, ((after[0] - ticks[0]) / hz - cpu) / seconds)
        stolen = (after[1] - ticks[1]) / hz / seconds
    return {
        "cpu_s": cpu,
        "other_cores": other,
        "stolen_cores": stolen,
        "seconds": seconds,
        "rss_mb": rss_kb / 1024,
        "pss_mb": sampler.peak_kb / 1024 if sampler else None,
        "code": child.returncode,
        "out": reader["out"].decode("utf-8", "replace"),
        "err": reader["err"].decode("utf-8", "replace"),
    }


def batchplan_tokens(out: str) -> int:
    return json.loads(out)["total"]["input_tokens"]


def plain_tokens(out: str) -> int:
    for line in out.splitlines():
        if line.startswith("prompt_tokens "):
            return int(line.split()[1])
    raise ValueError("plain.py printed no prompt_tokens")


def bench(kind: str, path: str, repeat: int, extra: list[str], check: bool) -> dict:
    ours = batchplan_command() + ["compare", "--json"] + extra + [path]
    plain = [sys.executable, os.path.join(HERE, "plain.py"), path]
    runs = {"batchplan": [], "plain": []}
    for i in range(repeat):
        order = (("batchplan", ours), ("plain", plain))
        for name, command in order if i % 2 == 0 else reversed(order):
            result = run_once(command)
            try:
                result["tokens"] = (batchplan_tokens if name == "batchplan" else plain_tokens)(result["out"])
            except (ValueError, KeyError, TypeError):
                sys.exit(f"{name} failed on {path} (exit {result['code']}): {result['err'].strip()[-500:]}")
            runs[name].append(result)
    # One more run of batchplan, untimed, for the memory of its process tree.
    tree = run_once(ours, tree_memory=True)
    b, p = runs["batchplan"], runs["plain"]
    row = {
        "kind": kind,
        "path": path,
        "mb": os.path.getsize(path) / 1e6,
        "batchplan_s": statistics.median(r["seconds"] for r in b),
        "plain_s": statistics.median(r["seconds"] for r in p),
        "batchplan_rss_mb": max(r["rss_mb"] for r in b + [tree]),
        "batchplan_pss_mb": tree["pss_mb"],
        "plain_rss_mb": max(r["rss_mb"] for r in p),
        "batchplan_cpu_s": statistics.median(r["cpu_s"] for r in b),
        "plain_cpu_s": statistics.median(r["cpu_s"] for r in p),
        "runs": repeat,
        "batchplan_runs_s": [round(r["seconds"], 3) for r in b],
        "plain_runs_s": [round(r["seconds"], 3) for r in p],
    }
    others = [r["other_cores"] for r in b + p if r["other_cores"] is not None]
    stolen = [r["stolen_cores"] for r in b + p if r["stolen_cores"] is not None]
    row["other_cores"] = max(others) if others else None
    row["stolen_cores"] = max(stolen) if stolen else None
    row["ratio"] = row["plain_s"] / row["batchplan_s"]
    if check:
        ours_n = {r["tokens"] for r in b}
        plain_n = {r["tokens"] for r in p}
        row["tokens"] = sorted(ours_n | plain_n)
        row["same_count"] = len(ours_n) == 1 and ours_n == plain_n
    return row


# Variants of batchplan itself, timed against the plain local full count:
# kind: (what it is, the flags it adds)
VARIANTS = {
    "cluster": ("--cluster local (Dask LocalCluster)", ["--cluster", "local"]),
    "sample": ("--sample 0.01 (1% of the bytes)", ["--sample", "0.01", "--seed", "1"]),
}


def bench_variant(kind: str, path: str, repeat: int, extra: list[str], check: bool) -> dict:
    """``batchplan compare`` with the variant's flags against it without,
    alternating; ratio = without / with. --check: the cluster's counts equal
    the local ones; the sample's interval holds the full count."""
    label, flags = VARIANTS[kind]
    base = batchplan_command() + ["compare", "--json"] + extra + [path]
    variant = batchplan_command() + ["compare", "--json"] + extra + flags + [path]
    runs = {"local": [], "variant": []}
    for i in range(repeat):
        order = (("local", base), ("variant", variant))
        for name, command in order if i % 2 == 0 else reversed(order):
            result = run_once(command)
            try:
                result["doc"] = json.loads(result["out"])
            except ValueError:
                sys.exit(f"{name} failed on {path} (exit {result['code']}): {result['err'].strip()[-500:]}")
            runs[name].append(result)
    local, other = runs["local"], runs["variant"]
    row = {
        "kind": kind,
        "label": label,
        "path": path,
        "mb": os.path.getsize(path) / 1e6,
        "local_s": statistics.median(r["seconds"] for r in local),
        "variant_s": statistics.median(r["seconds"] for r in other),
        "local_runs_s": [round(r["seconds"], 3) for r in local],
        "variant_runs_s": [round(r["seconds"], 3) for r in other],
    }
    row["ratio"] = row["local_s"] / row["variant_s"]
    truth = local[0]["doc"]["total"]
    doc = other[0]["doc"]
    if kind == "sample":
        sample = doc["sample"]
        row["bytes_read_share"] = sample["bytes_read"] / sample["bytes"]
        row["sampled_lines"] = sample["sampled_lines"]
        row["interval"] = (sample["input_tokens"]["low"], sample["input_tokens"]["high"])
        row["truth"] = truth["input_tokens"]
        row["ok"] = sample["input_tokens"]["low"] <= truth["input_tokens"] <= sample["input_tokens"]["high"]
    else:
        row["ok"] = all(r["doc"] == local[0]["doc"] for r in local + other)
    if not check:
        row.pop("ok")
    return row


def installed_engines() -> list[str]:
    import importlib.util

    return [e for e in ENGINES if e == "tiktoken" or importlib.util.find_spec(e) is not None]


def _alternate(commands: dict[str, tuple[list[str], dict]], repeat: int) -> dict[str, list[dict]]:
    """Each command ``repeat`` times, in order then in reverse (A B C C B A ...)."""
    runs: dict[str, list[dict]] = {name: [] for name in commands}
    names = list(commands)
    for i in range(repeat):
        for name in names if i % 2 == 0 else reversed(names):
            command, env = commands[name]
            result = run_once(command, env=env)
            if result["code"] not in (0, 1):
                sys.exit(f"{name} failed (exit {result['code']}): {result['err'].strip()[-500:]}")
            runs[name].append(result)
    return runs


def _median(runs: list[dict]) -> float:
    return statistics.median(r["seconds"] for r in runs)


def bench_engines(kind: str, path: str, repeat: int, extra: list[str], cores: int) -> list[dict]:
    """``compare --json`` with each engine, and the floor with each, alternated."""
    commands = {}
    for engine in installed_engines():
        env = {"BATCHPLAN_TOKENIZER": engine}
        commands[f"compare {engine}"] = (batchplan_command() + ["compare", "--json"] + extra + [path], env)
        commands[f"floor {engine}"] = ([sys.executable, os.path.join(HERE, "floor.py"), path, "--engine", engine], env)
    runs = _alternate(commands, repeat)
    rows = []
    base = _median(runs["compare tiktoken"])
    first_doc = json.loads(runs["compare tiktoken"][0]["out"])
    first_floor = runs["floor tiktoken"][0]["out"]
    for engine in installed_engines():
        compare_runs, floor_runs = runs[f"compare {engine}"], runs[f"floor {engine}"]
        compare_s, floor_s = _median(compare_runs), _median(floor_runs)
        rows.append({
            "kind": kind,
            "path": path,
            "mb": os.path.getsize(path) / 1e6,
            "engine": engine,
            "compare_s": compare_s,
            "floor_s": floor_s,
            "compare_cpu_s": statistics.median(r["cpu_s"] for r in compare_runs),
            "compare_runs_s": [round(r["seconds"], 3) for r in compare_runs],
            "floor_runs_s": [round(r["seconds"], 3) for r in floor_runs],
            "share_of_floor": floor_s / cores / compare_s,
            "vs_tiktoken": base / compare_s,
            "same_plan": all(json.loads(r["out"]) == first_doc for r in compare_runs),
            "same_floor": all(r["out"] == first_floor for r in floor_runs),
            "input_tokens": first_doc["total"]["input_tokens"],
        })
    return rows


def bench_cache(kind: str, path: str, repeat: int, extra: list[str]) -> dict:
    """``compare --json --cache expected`` against ``compare --json``, alternated."""
    plain = batchplan_command() + ["compare", "--json"] + extra + [path]
    runs = _alternate({"plain": (plain, None), "cache": (plain[:-1] + ["--cache", "expected", path], None)}, repeat)
    docs = {name: [json.loads(r["out"]) for r in rs] for name, rs in runs.items()}
    return {
        "kind": kind,
        "path": path,
        "mb": os.path.getsize(path) / 1e6,
        "plain_s": _median(runs["plain"]),
        "cache_s": _median(runs["cache"]),
        "plain_runs_s": [round(r["seconds"], 3) for r in runs["plain"]],
        "cache_runs_s": [round(r["seconds"], 3) for r in runs["cache"]],
        "ratio": _median(runs["cache"]) / _median(runs["plain"]),
        # CPU seconds of each process tree: less shaken than wall time by a busy host.
        "plain_cpu_s": statistics.median(r["cpu_s"] for r in runs["plain"]),
        "cache_cpu_s": statistics.median(r["cpu_s"] for r in runs["cache"]),
        "same_tokens": len({d["total"]["input_tokens"] for ds in docs.values() for d in ds}) == 1,
    }


def show_engines(rows: list[dict], cores: int) -> None:
    if not rows:
        return
    print()
    header = f"{'file':<34} {'MB':>6} {'engine':<10} {'compare s':>9} {'vs tiktoken':>11} {'floor s (1 proc)':>16} {'share of floor':>14}  {'plan':<9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        label = TARGETS[row["kind"]][0]
        plan = "identical" if row["same_plan"] and row["same_floor"] else "DIFFERENT"
        print(f"{label:<34} {row['mb']:>6.0f} {row['engine']:<10} {row['compare_s']:>9.2f} {row['vs_tiktoken']:>10.2f}x"
              f" {row['floor_s']:>16.2f} {row['share_of_floor']:>13.0%}  {plan:<9}")
    print()
    print(f"share of floor = (floor time / {cores} cores) / compare time: what {cores} processes that only parse and encode, "
          f"with the same engine, could do at best, against compare; medians of alternated runs.")
    by_kind: dict[str, set] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], set()).add(row["input_tokens"])
    for kind, counts in by_kind.items():
        verdict = "identical for every engine" if len(counts) == 1 else "DIFFERENT between engines"
        print(f"check {kind}: prompt tokens {verdict}: {', '.join(f'{n:,}' for n in sorted(counts))}")


def show_cache(rows: list[dict]) -> None:
    if not rows:
        return
    print()
    header = f"{'file':<34} {'MB':>6} {'compare s':>9} {'--cache expected s':>18} {'ratio':>6} {'target':>7} {'CPU s ratio':>12}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{TARGETS[row['kind']][0]:<34} {row['mb']:>6.0f} {row['plain_s']:>9.2f} {row['cache_s']:>18.2f} "
              f"{row['ratio']:>5.2f}x {'<=' + str(CACHE_TARGET) + 'x':>7} {row['cache_cpu_s'] / row['plain_cpu_s']:>11.2f}x"
              + ("" if row["same_tokens"] else "  prompt tokens DIFFERENT"))
    print()
    print("ratio = --cache expected time / plain compare time, median of alternated runs; CPU s ratio: the same in CPU seconds.")


def show_variants(rows: list[dict]) -> None:
    if not rows:
        return
    print()
    header = f"{'variant':<36} {'MB':>6} {'full count s':>12} {'variant s':>10} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for row in rows:
        print(f"{row['label']:<36} {row['mb']:>6.0f} {row['local_s']:>12.2f} {row['variant_s']:>10.2f} {row['ratio']:>6.2f}x")
    print()
    print("ratio = batchplan compare (local full count) time / variant time, median of the runs.")
    for row in rows:
        if row["kind"] == "sample":
            low, high = row["interval"]
            print(f"sample: read {row['bytes_read_share']:.2%} of the bytes, {row['sampled_lines']:,} lines; prompt tokens "
                  f"{low:,} to {high:,}, full count {row['truth']:,}" + (f" ({'inside' if row['ok'] else 'OUTSIDE'})" if "ok" in row else ""))
        elif "ok" in row:
            print(f"check cluster: JSON plan {'identical to' if row['ok'] else 'DIFFERENT from'} the local run")


def show(rows: list[dict]) -> None:
    print()
    header = f"{'file':<34} {'MB':>6} {'batchplan s':>11} {'plain s':>8} {'ratio':>6} {'target':>7}  {'peak RSS (any process)':>22} {'tree PSS':>9} {'plain RSS':>9}"
    print(header)
    print("-" * len(header))
    for row in rows:
        label, want = TARGETS[row["kind"]]
        target = f">={want}x" if want else ""
        pss = f"{row['batchplan_pss_mb']:.0f} MB" if row["batchplan_pss_mb"] else "n/a"
        print(f"{label:<34} {row['mb']:>6.0f} {row['batchplan_s']:>11.2f} {row['plain_s']:>8.2f} {row['ratio']:>5.2f}x {target:>7}"
              f"  {row['batchplan_rss_mb']:>19.0f} MB {pss:>9} {row['plain_rss_mb']:>6.0f} MB")
    print()
    print(f"ratio = plain time / batchplan time, median of the runs; memory limit {RSS_LIMIT_MB} MB.")
    for row in rows:
        if row.get("other_cores") is not None:
            print(f"{row['kind']}: CPU seconds batchplan {row['batchplan_cpu_s']:.1f}, plain {row['plain_cpu_s']:.1f}; "
                  f"other processes used up to {row['other_cores']:.2f} cores and the hypervisor stole up to "
                  f"{row['stolen_cores']:.2f} during a run (both slow the runs down).")
    for row in rows:
        if "same_count" in row:
            verdict = "same" if row["same_count"] else "DIFFERENT"
            print(f"check {row['kind']}: prompt tokens {verdict}: {', '.join(f'{n:,}' for n in row['tokens'])}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="add the 500 MB file (generated once into benchmarks/data/)")
    parser.add_argument("--quick", action="store_true", help="files at 1/10 of the full size")
    parser.add_argument("--only", default=None, help="comma-separated kinds: unique,shared,tiny,large,cluster,sample")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each command per file (tiny: 4x as many)")
    parser.add_argument("--check", action="store_true", help="check that batchplan's and plain.py's prompt tokens agree")
    parser.add_argument("--workers", type=int, default=None, help="pass --workers N to batchplan")
    parser.add_argument("--json", dest="json_out", default=None, metavar="PATH", help="also write the figures to PATH")
    args = parser.parse_args(argv)

    kinds = ["unique", "shared", "tiny"] + (["large"] if args.full else []) + list(VARIANTS) + ["engines", "cache"]
    if args.only:
        kinds = [k for k in args.only.split(",") if k]
        unknown = set(kinds) - set(TARGETS) - set(VARIANTS) - {"engines", "cache"}
        if unknown:
            parser.error(f"unknown kind(s): {', '.join(sorted(unknown))}")
    scale = 0.1 if args.quick else 1.0
    extra = ["--workers", str(args.workers)] if args.workers else []

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{cores} cores, load average {load:.2f}; python {sys.version.split()[0]}; batchplan: {' '.join(batchplan_command())}")
    print(f"tokenizer engines installed: {', '.join(installed_engines())}")
    rows, variants, engines, caches = [], [], [], []
    for kind in kinds:
        if kind in ("engines", "cache"):
            for file_kind in ("unique", "shared"):
                path = generate.generate(file_kind, scale)
                print(f"timing {kind}: {path} ({os.path.getsize(path) / 1e6:.0f} MB), {args.repeat} runs each ...", flush=True)
                if kind == "engines":
                    engines += bench_engines(file_kind, path, args.repeat, extra, cores)
                else:
                    caches.append(bench_cache(file_kind, path, args.repeat, extra))
            continue
        if kind in VARIANTS:
            # On the 500 MB file with --full, else on the unique-content file.
            path = generate.generate("large" if args.full else "unique", scale)
            print(f"timing {kind}: {path} ({os.path.getsize(path) / 1e6:.0f} MB), {args.repeat} runs each ...", flush=True)
            variants.append(bench_variant(kind, path, args.repeat, extra, args.check))
            continue
        path = generate.generate(kind, scale)
        repeat = args.repeat * 4 if kind == "tiny" else args.repeat
        print(f"timing {kind}: {path} ({os.path.getsize(path) / 1e6:.0f} MB), {repeat} runs each ...", flush=True)
        rows.append(bench(kind, path, repeat, extra, args.check))
    if rows:
        show(rows)
    show_variants(variants)
    show_engines(engines, cores)
    show_cache(caches)
    if args.json_out:
        with open(args.json_out, "w") as handle:
            json.dump({"cores": cores, "load": load, "rows": rows, "variants": variants, "engines": engines, "cache": caches}, handle, indent=2)
    # A 95% interval misses the full count one run in twenty: the sample's
    # check is printed, never failed on.
    if args.check and not (all(r["same_count"] for r in rows) and all(v.get("ok", True) for v in variants if v["kind"] != "sample")
                           and all(e["same_plan"] and e["same_floor"] for e in engines) and all(c["same_tokens"] for c in caches)
                           and all(len({e["input_tokens"] for e in engines if e["kind"] == k}) == 1 for k in {e["kind"] for e in engines})):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
