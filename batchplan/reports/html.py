"""Write ``compare --html``: one self-contained HTML file (tables, charts,
warnings) that opens offline and can be sent to a colleague.

The page is a Jinja2 template (``templates/report.html.j2``, autoescaped);
the charts are drawn by matplotlib as SVG and put inline, so the page needs
no script, no font and no network. A Content-Security-Policy meta tag forbids
every fetch, so nothing can load even if something tried.

jinja2 and matplotlib are the optional ``html`` extra; they are imported
only here, only when a report is written.
"""

from __future__ import annotations

import io
from decimal import Decimal
from importlib import resources

from batchplan.atomic import atomic_write
from batchplan.errors import InputError
from batchplan.planning.cache import HISTOGRAM_BINS, bin_bounds
from batchplan.planning.reading import line_ref
from batchplan.planning.realtime import IMPLICIT, human_duration

INSTALL_HINT = "--html needs the html extra (jinja2, matplotlib): pip install 'batchplan[html]'"


def require_html() -> None:
    """ImportError with a one-line install hint when the extra is missing."""
    try:
        import jinja2  # noqa: F401
        import matplotlib  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT) from None


def _svg(fig, salt: str) -> str:
    """A matplotlib figure as an inline <svg> element, reproducibly."""
    import matplotlib

    buf = io.StringIO()
    # The salt keeps clip-path ids distinct between the charts of one page
    # and the same from run to run.
    with matplotlib.rc_context({"svg.hashsalt": f"batchplan-{salt}", "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None}, bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float = 7.5, height: float = 3.6):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=96)
    ax = fig.subplots()
    ax.grid(True, axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    return fig, ax


def cost_chart(decision) -> str | None:
    """Real-time (under the assumptions) against batch cost, per model."""
    models = [m for m in decision.models if m.realtime_cost is not None]
    if not models:
        return None
    fig, ax = _figure()
    names = [m.model for m in models]
    xs = range(len(models))
    width = 0.27
    lists = [float(m.list_cost) for m in models]
    real = [float(m.realtime_cost) for m in models]
    batch = [float(m.batch_cost) for m in models]
    ax.bar([x - width for x in xs], lists, width, label="real-time, list price", color="#b0b7c3")
    ax.bar(list(xs), real, width, label=f"real-time, cache={decision.options.cache}" + (", free quota" if decision.options.free_quota else ""), color="#d9822b")
    ax.bar([x + width for x in xs], batch, width, label="batch", color="#2b6cb0")
    ax.set_xticks(list(xs), names, rotation=15 if len(names) > 3 else 0)
    ax.set_ylabel(f"cost ({decision.currency})")
    ax.set_title("Real-time against batch, per model")
    ax.legend(frameon=False, fontsize=8)
    return _svg(fig, "cost")


def hit_share_chart(decision) -> str | None:
    """Cost at each cache hit share from 0 to 100%, with the break-even."""
    t = decision.total
    if t.input_list_cost is None or t.output_list_cost is None or not t.input_tokens:
        return None
    f = decision.implicit_hit_factor
    b = decision.batch_factor
    shares = [Decimal(i) / 100 for i in range(0, 101, 5)]
    x = [float(h * 100) for h in shares]
    real_input = [float(t.input_list_cost * (1 - (1 - f) * h)) for h in shares]
    batch_input = float(t.input_list_cost * b)
    real_total = [float(t.input_list_cost * (1 - (1 - f) * h) + t.output_list_cost) for h in shares]
    batch_total = float((t.input_list_cost + t.output_list_cost) * b)
    fig, ax = _figure()
    ax.plot(x, real_input, color="#d9822b", label="real-time input")
    ax.axhline(batch_input, color="#2b6cb0", label="batch input")
    ax.plot(x, real_total, color="#d9822b", linestyle="--", label="real-time input + output")
    ax.axhline(batch_total, color="#2b6cb0", linestyle="--", label="batch input + output")
    if decision.break_even_hit_share is not None and decision.break_even_hit_share <= 1:
        be = float(decision.break_even_hit_share * 100)
        ax.axvline(be, color="#c53030", linestyle=":")
        ax.annotate(f"break-even {be:.1f}%", (be, batch_input), textcoords="offset points", xytext=(6, 8), color="#c53030", fontsize=9)
    if decision.options.cache != "none" and t.hit_share is not None:
        h = t.hit_share
        ax.plot([float(h * 100)], [float(t.input_list_cost * (1 - (1 - f) * h))], "o", color="#d9822b")
        ax.annotate(f"cache={decision.options.cache}: {float(h * 100):.0f}%", (float(h * 100), float(t.input_list_cost * (1 - (1 - f) * h))),
                    textcoords="offset points", xytext=(6, -14), fontsize=9)
    ax.set_xlim(0, 100)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(f"share of input tokens that hit the implicit cache (%), hits at {f:.0%} of input price")
    ax.set_ylabel(f"cost ({decision.currency})")
    ax.set_title("Cost at each cache hit share (whole plan, list prices, no free quota)")
    ax.legend(frameon=False, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    return _svg(fig, "hitshare")


def histogram_chart(result, catalog) -> str | None:
    """Prompt tokens per request (power-of-two bins), with the tier bounds."""
    stats = result.plan.realtime
    if stats is None or not stats.models:
        return None
    counts = [0] * HISTOGRAM_BINS
    for s in stats.models.values():
        for i, n in s.histogram.items():
            counts[i] += n
    used = [i for i, n in enumerate(counts) if n]
    lo, hi = min(used), max(used)
    fig, ax = _figure()
    for i in range(lo, hi + 1):
        low, high = bin_bounds(i)
        left = max(low, 0.5)
        right = high if high is not None else low * 2
        ax.bar(left, counts[i], width=right - left, align="edge", color="#4a5568", edgecolor="white")
    ax.set_xscale("log", base=2)
    bounds = set()
    for name in stats.models:
        model = catalog.model(name)
        price = model.price(result.region) if model is not None else None
        if price is not None and len(price.tiers) > 1:
            bounds.update(t.max_input_tokens for t in price.tiers if t.max_input_tokens)
    top = max(counts)
    for bound in sorted(bounds):
        ax.axvline(bound, color="#c53030", linestyle=":")
        ax.annotate(f"tier bound {bound:,}", (bound, top), rotation=90, fontsize=8, color="#c53030", xytext=(-10, -4),
                    textcoords="offset points", ha="right", va="top")
    right_edge = max([bin_bounds(hi)[0] * 2] + [b * 2 for b in bounds])
    ax.set_xlim(max(bin_bounds(lo)[0], 0.5), right_edge)
    ax.set_xlabel("prompt tokens per request (log scale)")
    ax.set_ylabel("requests")
    ax.set_title("Prompt tokens per request, with the price-tier bounds")
    return _svg(fig, "histogram")


def render_html(result, catalog) -> str:
    """The report page as text."""
    import jinja2
    from markupsafe import Markup

    from batchplan.catalog.money import money
    from batchplan.reports.documents import warnings
    from batchplan.reports.text import saving_percent, tokens

    decision = result.realtime
    text = resources.files("batchplan.reports").joinpath("templates/report.html.j2").read_text("utf-8")
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["money"] = money
    env.filters["tokens"] = tokens
    env.filters["share"] = lambda v: "" if v is None else f"{v:.1%}"
    env.filters["duration"] = human_duration
    plan = result.plan
    rows = [
        {"model": model + (" [thinking]" if thinking else ""), "tier": tier, "row": row}
        for (model, tier, thinking), row in sorted(plan.rows.items(), key=lambda kv: (kv[0][0], kv[0][2], kv[0][1]))
    ]
    charts = {
        "cost": cost_chart(decision),
        "hit_share": hit_share_chart(decision),
        "histogram": histogram_chart(result, catalog),
    }
    return env.from_string(text).render(
        result=result,
        plan=plan,
        rows=rows,
        total=plan.total(),
        decision=decision,
        implicit=IMPLICIT,
        charts={k: Markup(v) if v else None for k, v in charts.items()},
        warnings=warnings(result),
        errors=plan.errors,
        line_ref=line_ref,
        files=result.files,
        saving_percent=saving_percent,
        estimate=_estimate_html(result),
    )


def _estimate_html(result):
    """The pilot's estimate with its intervals (compare --calibrate PILOT.jsonl), or None."""
    from markupsafe import Markup

    from batchplan.reports import estimate

    return Markup(estimate.html(result)) if getattr(result, "output_estimate", None) is not None else None


def write_html(result, path: str, catalog=None) -> None:
    """Write the report to ``path`` atomically (a temporary file beside it,
    then renamed), so a failed write never leaves half a page."""
    from batchplan.catalog.catalog import default_catalog

    if result.realtime is None:
        result.decide(None, catalog)
    page = render_html(result, catalog or default_catalog())
    try:
        with atomic_write(path) as handle:
            handle.write(page.encode("utf-8"))
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from None
