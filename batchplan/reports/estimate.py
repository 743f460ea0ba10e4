"""The pilot's estimate as text, JSON and HTML (``compare --calibrate
PILOT.jsonl``): expected output tokens, real-time and batch cost, each with
its 95% interval, beside the upper bound, per model and in total; and the
prompt-count check. Money is exact until here; rounded only for display."""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import Any

from batchplan.catalog.money import exact, money
from batchplan.planning.estimate import CONFIDENCE, Bounds, ModelOutput, OutputEstimate
from batchplan.reports import fit

SAME_DISTRIBUTION = ("the pilot's answers came in real time; batch answers are assumed to be drawn from the same "
                     "length distribution (same model, same body), which nothing published confirms or denies")


def _bound(result, model: str | None) -> tuple[Decimal | None, Decimal | None]:
    """The plan's upper bound (the rows: worst-case output) of a model, or of all."""
    rt = bt = Decimal(0)
    for (name, _, _), row in result.plan.rows.items():
        if model is not None and name != model:
            continue
        if row.realtime_cost is None or row.batch_cost is None:
            return None, None
        rt += row.realtime_cost
        bt += row.batch_cost
    return rt, bt


def _money(b: Bounds | None) -> str:
    if b is None:
        return "unknown"
    high = money(b.high)
    places = len(high.partition(".")[2])
    return f"{money(b.estimate, places)} ({money(b.low, places)} to {high})"


def _tokens(b: Bounds) -> str:
    return f"{int(b.estimate):,} ({int(b.low):,} to {int(b.high):,})"


def rows(result, estimate: OutputEstimate) -> list[tuple[ModelOutput, Decimal | None, Decimal | None]]:
    out = [(m, *_bound(result, name)) for name, m in sorted(estimate.models.items())]
    if estimate.total is not None:
        out.append((estimate.total, *_bound(result, None)))
    return out


def check_lines(estimate: OutputEstimate, result=None) -> list[str]:
    """The prompt-count check, one line a model; loud when not exact."""
    out = []
    for c in estimate.checks:
        line = c.describe()
        if c.agrees:
            out.append(f"Prompt tokens: {line}.")
            continue
        out.append(f"WARNING: prompt tokens billed differ from those counted: {line}.")
        if c.approximate and result is not None:
            counted = sum(row.input_tokens for (name, _, _), row in result.plan.rows.items() if name == c.model)
            out.append(f"  Correction (measured, {c.model} is marked approximate): prompt tokens x {c.ratio:.4f} "
                       f"(95% {c.ratio_low:.4f} to {c.ratio_high:.4f}) = {round(counted * c.ratio):,} "
                       f"({round(counted * c.ratio_low):,} to {round(counted * c.ratio_high):,}) instead of {counted:,} counted; "
                       "the costs above use the counted tokens.")
    return out


def warning_lines(result) -> list[str]:
    """For stderr, whatever the output format: prompt counts that differ from the billed ones."""
    estimate: OutputEstimate = result.output_estimate
    return [f"warning: pilot: prompt tokens billed differ from those counted: {c.describe()}"
            for c in estimate.checks if not c.agrees]


# The estimate table's columns, and what a narrow terminal gives up first.
COLUMNS = (
    ("model", "model", None, "left"),
    ("pilot", "pilot requests", "pilot", "right"),
    ("method", "method", None, "left"),
    ("output", "output tokens (95%)", "output (95%)", "right"),
    ("rt_bound", "real-time bound", "RT bound", "right"),
    ("rt", "real-time expected (95%)", "RT (95%)", "right"),
    ("batch_bound", "batch bound", "B bound", "right"),
    ("batch", "batch expected (95%)", "B (95%)", "right"),
)
STEPS = (fit.drop("method"), fit.drop("pilot"), fit.drop("rt_bound"), fit.drop("batch_bound"))


def lines(result, width: int | None = None) -> list[str]:
    """The text under the compare table, fitted to ``width`` (no limit when None)."""
    estimate: OutputEstimate = result.output_estimate
    cur = result.currency
    columns = [fit.Column(key, header + (f" ({cur})" if key.endswith("bound") else ""), short, align)
               for key, header, short, align in COLUMNS]
    body = []
    for m, rt_bound, bt_bound in rows(result, estimate):
        body.append({"model": m.model, "pilot": f"{m.sample_requests:,} of {m.lines:,}", "method": m.method,
                     "output": _tokens(m.output_tokens), "rt_bound": money(rt_bound), "rt": _money(m.realtime_cost),
                     "batch_bound": money(bt_bound), "batch": _money(m.batch_cost)})
    table = fit.fit_table(columns, body, width, STEPS)
    out = [f"Expected from the pilot {estimate.source} ({CONFIDENCE:.0%} intervals; the bound is every answer at its cap):"]
    out.extend(table.lines)
    out.extend(fit.notes([table]))
    out.append("Method: per model, the estimator (mean per request, ratio to the counted prompt tokens, or regression on "
               "them) with the smaller estimated variance; Student t with the finite-population correction and a "
               "skewness correction (Hall 1992). Thinking tokens count as output.")
    for m in estimate.models.values():
        if not m.cochran_ok:
            out.append(f"WARNING: {m.model}: the answers are more skewed than {m.sample_requests} requests can carry "
                       f"(skewness {m.skewness:.1f}; Cochran's rule wants {max(0, round(25 * m.skewness ** 2)):,}): the "
                       "interval is approximate, likely too narrow on the high side; a larger pilot (--target) helps.")
    if estimate.unsampled:
        names = ", ".join(f"{m} ({n:,} lines)" for m, n in sorted(estimate.unsampled.items()))
        out.append(f"Not in the pilot: {names}; no total estimate (their bound is in the table above).")
    out.extend(check_lines(estimate, result))
    out.extend(f"Note: {n}." for n in estimate.notes)
    out.append(f"Assumption: {SAME_DISTRIBUTION}.")
    return fit.wrap(out, width)


def _bounds_doc(b: Bounds | None, is_money: bool) -> dict[str, Any] | None:
    if b is None:
        return None
    if is_money:
        return {"estimate": exact(b.estimate), "low": exact(b.low), "high": exact(b.high)}
    return {"estimate": int(b.estimate), "low": int(b.low), "high": int(b.high)}


def _model_doc(m: ModelOutput, rt_bound, bt_bound) -> dict[str, Any]:
    return {
        "method": m.method,
        "sample_requests": m.sample_requests,
        "requests": m.lines,
        "output_tokens": _bounds_doc(m.output_tokens, False),
        "realtime_cost": _bounds_doc(m.realtime_cost, True),
        "batch_cost": _bounds_doc(m.batch_cost, True),
        "realtime_cost_bound": exact(rt_bound),
        "batch_cost_bound": exact(bt_bound),
        "cochran_ok": m.cochran_ok,
        "skewness": round(m.skewness, 4) if m.skewness == m.skewness else None,
        "variances": {k: round(v, 2) for k, v in m.variances.items()},
    }


def document(result) -> dict[str, Any]:
    """The ``output_estimate`` object of the JSON document (docs/json.md)."""
    estimate: OutputEstimate = result.output_estimate
    built = rows(result, estimate)
    models = {m.model: _model_doc(m, rt, bt) for m, rt, bt in built if m.model != "TOTAL" or estimate.total is None}
    total = _model_doc(*built[-1]) if estimate.total is not None else None
    return {
        "source": estimate.source,
        "confidence": CONFIDENCE,
        "method": estimate.method,
        "sample_requests": sum(m.sample_requests for m in estimate.models.values()),
        "models": models,
        "total": total,
        "unsampled": dict(estimate.unsampled),
        "prompt_check": [
            {"model": c.model, "requests": c.requests, "exact": c.exact, "exact_share": round(c.exact_share, 6),
             "mean_difference": round(c.mean_difference, 6), "max_difference": c.max_difference,
             "ratio": round(c.ratio, 6), "ratio_low": round(c.ratio_low, 6), "ratio_high": round(c.ratio_high, 6),
             "approximate": c.approximate, "agrees": c.agrees}
            for c in estimate.checks
        ],
        "notes": list(estimate.notes),
        "assumption": SAME_DISTRIBUTION,
    }


def html(result) -> str:
    """The estimate as an HTML section body (escaped)."""
    estimate: OutputEstimate = result.output_estimate
    cur = escape(result.currency)
    head = ("<thead><tr><th>model</th><th>pilot requests</th><th>method</th><th>output tokens (95%)</th>"
            f"<th>real-time bound ({cur})</th><th>real-time expected (95%)</th><th>batch bound ({cur})</th>"
            "<th>batch expected (95%)</th></tr></thead>")
    body = []
    for m, rt, bt in rows(result, estimate):
        cls = ' class="total"' if m.model == "TOTAL" else ""
        cells = [m.model, f"{m.sample_requests:,} of {m.lines:,}", m.method, _tokens(m.output_tokens), money(rt),
                 _money(m.realtime_cost), money(bt), _money(m.batch_cost)]
        body.append(f"<tr{cls}>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    notes = [escape(line) for line in lines(result)[2:]]
    return (f'<table id="estimate-table">{head}<tbody>{"".join(body)}</tbody></table>'
            + "".join(f'<p class="muted">{n}</p>' for n in notes))
