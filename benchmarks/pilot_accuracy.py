"""How far is a pilot's estimate from the truth? On generated jobs whose every
output length is known, draw pilots of N = 50, 100, 200 and 400 requests as
``batchplan pilot`` does (strata by model, seeded), estimate as
``compare --calibrate`` does (planning.estimate), and print per N: the
median and 90th-percentile relative error of the expected output tokens,
the mean relative half-width of the 95% interval, how often it held the
true total, and what the pilot cost (real-time, as billed) as a share of
the job's batch cost: about 2 N / lines, since real-time is twice batch.

    python benchmarks/pilot_accuracy.py [--seeds 200] [--lines 20000]

The jobs (none of them is the data the tests use):
  chat      log-normal lengths, sigma 1.0 (CV 1.3), barely tied to the prompt
  extract   gamma(4) lengths (CV 0.5): templated extraction
  translate output 0.6 x the prompt, log-normal noise sigma 0.3
  thinking  log-normal sigma 1.2 (CV 1.8), a heavy tail, 20% of lines capped at max_tokens
Prices: qwen-plus intl (0.4 / 1.2 USD per 1M, batch half), max_tokens 4,096.
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
import sys
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from batchplan.planning import estimate as E  # noqa: E402

CAP = 4096
IN, OUT = Decimal("0.4") / E.MILLION, Decimal("1.2") / E.MILLION


def job(kind: str, seed: int, lines: int):
    rng = random.Random(seed)
    rows = []
    for i in range(lines):
        x = max(20, int(rng.lognormvariate(6.2, 0.9)))
        model = "qwen-plus" if rng.random() < 0.75 else "qwen-flash"
        if kind == "chat":
            y = rng.lognormvariate(5.5 + 0.05 * math.log(x), 1.0)
        elif kind == "extract":
            y = rng.gammavariate(4.0, 60.0)
        elif kind == "translate":
            y = 0.6 * x * rng.lognormvariate(0.0, 0.3)
        else:
            y = rng.lognormvariate(6.8, 1.2)
        rows.append((f"r{i}", model, x, min(CAP, 1 + int(y))))
    return rows


def one_pilot(rows, n: int, seed: int):
    groups: dict[tuple, list[int]] = {}
    for _, model, x, _ in rows:
        groups.setdefault((model, False, "flat"), []).append(x)
    design = E.design(groups, n)
    members: dict[tuple, list] = {}
    population: dict[tuple, E.PopulationStratum] = {}
    for row in rows:
        key = design.stratum((row[1], False, "flat"), row[2])
        members.setdefault(key, []).append(row)
        pop = population.setdefault(key, E.PopulationStratum(input_price=IN, output_price=OUT))
        pop.lines += 1
        pop.prompt_tokens += row[2]
    counts = E.allocate({k: len(v) for k, v in members.items()}, n)
    order = E.draw_order(members, seed)
    chosen = [(key, r) for key, items in order.items() for r in items[:counts[key]]]
    sampled = [E.Sampled(r[0], key, r[2], r[2], r[3]) for key, r in chosen]
    pilot_cost = sum(Decimal(r[2]) * IN + Decimal(r[3]) * OUT for _, r in chosen)  # real-time, as billed
    return E.estimate_output(population, sampled, Decimal("0.5")), pilot_cost


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--lines", type=int, default=20_000)
    args = parser.parse_args()
    print(f"{args.lines:,} lines a job, {args.seeds} seeds a cell (a new job and a new draw each)")
    print(f"{'job':10} {'N':>4} {'median |err|':>13} {'p90 |err|':>10} {'half-width':>11} {'covered':>8} {'pilot/job':>10}")
    for kind in ("chat", "extract", "translate", "thinking"):
        for n in (50, 100, 200, 400):
            errors, widths, covered, shares = [], [], 0, []
            for seed in range(args.seeds):
                rows = job(kind, 10_000 + seed, args.lines)
                truth = sum(r[3] for r in rows)
                batch_truth = (sum(r[2] for r in rows) * IN + truth * OUT) / 2
                result, pilot_cost = one_pilot(rows, n, seed)
                t = result.total.output_tokens
                errors.append(abs(float(t.estimate) / truth - 1))
                widths.append(float(t.high - t.low) / 2 / truth)
                covered += t.low <= truth <= t.high
                shares.append(float(pilot_cost / batch_truth))
            errors.sort()
            print(f"{kind:10} {n:>4} {statistics.median(errors):>12.1%} {errors[int(0.9 * len(errors))]:>10.1%} "
                  f"{statistics.mean(widths):>10.1%} {covered / args.seeds:>8.1%} {statistics.mean(shares):>9.2%}", flush=True)


if __name__ == "__main__":
    main()
