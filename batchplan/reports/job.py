"""A ``batchplan run`` job for people: its parts, its live line, and its report
(estimated against actual cost per model, as reconcile words it), in text and
as a self-contained HTML page. Data in (the documents ``jobs.run`` makes),
lines out; ``write_job_html`` is the one edge that writes a file.
"""

from __future__ import annotations

from decimal import Decimal

from tabulate import tabulate

from batchplan.atomic import atomic_write
from batchplan.catalog.money import money


def _money(text: str | None) -> str:
    return "unknown" if text is None else money(Decimal(text))


def _percent(value) -> str:
    return "" if value is None else f"{value:+.1%}"


def progress_line(snap) -> str:
    """The live display's postfix: parts by state, cost so far against the limit."""
    parts = ", ".join(f"{n} {state}" for state, n in sorted(snap.parts.items()))
    spent = "unknown" if snap.committed is None else money(snap.committed)
    limit = f" of {money(snap.max_cost)}" if snap.max_cost is not None else ""
    return f"parts: {parts or 'none'} | committed {spent}{limit} {snap.currency}"


def parts_table(parts: list[dict], currency: str) -> str:
    head = ["part", "model", "requests", "state", "batch", "status", "done", "ok", "failed", "retry",
            f"reserved ({currency})", f"actual ({currency})"]
    rows = [[p["part"], p["model"], f"{p['lines']:,}", p["state"], p["batch_id"] or "", p["status"] or "",
             f"{p['done']:,}", f"{p['succeeded']:,}", f"{p['failed']:,}", f"{p['retried']:,}",
             _money(p["reserved"]), "" if p["actual"] is None and p["state"] != "collected" else _money(p["actual"])]
            for p in parts]
    return tabulate(rows, head, tablefmt="simple", disable_numparse=True)


def status_lines(doc: dict) -> list[str]:
    """``batchplan job status``: totals, then the parts."""
    r = doc["requests"]
    cur = doc["currency"]
    out = [f"job in {doc['directory']}: {', '.join(doc['files'] or [])}"]
    if not doc["prepared"]:
        out.append("not prepared yet (planning or splitting did not finish); nothing was sent")
    state = "cancelled" if doc["cancelled"] else "recorded"
    out.append(f"requests: {r['total']:,} total, {r['done']:,} done, {r['succeeded']:,} succeeded, "
               f"{r['failed']:,} failed for good ({state})")
    out.append(f"cost: committed {_money(doc['committed'])} {cur}, actual so far {_money(doc['actual'])} {cur}")
    if doc["parts"]:
        out += ["", parts_table(doc["parts"], cur)]
    return out


def report_lines(doc: dict) -> list[str]:
    """The end of a run: outcome, estimated against actual per model and in total."""
    cur = doc["currency"]
    r = doc["requests"]
    rec = doc["reconcile"]
    rows = [(m["model"], m) for m in rec["models"]] + [("TOTAL", rec["total"])]
    head = ["model", "requests", "succeeded", "failed", "prompt tok. est.", "prompt tok. actual",
            "output tok. est.", "output tok. actual", f"batch cost est. ({cur})", f"batch cost actual ({cur})", "cost error"]
    body = [[name, f"{f['requests']:,}", f"{f['succeeded']:,}", f"{f['failed']:,}",
             _tokens(f["prompt_tokens"]["estimated"]), _tokens(f["prompt_tokens"]["actual"]),
             _tokens(f["output_tokens"]["estimated"]), _tokens(f["output_tokens"]["actual"]),
             _money(f["batch_cost"]["estimated"]), _money(f["batch_cost"]["actual"]),
             _percent(f["batch_cost"]["error"])] for name, f in rows]
    cost = doc["cost"]
    out = [
        tabulate(body, head, tablefmt="simple", colalign=("left",) + ("right",) * 10, disable_numparse=True),
        "",
        "Estimates and actuals compare the succeeded requests (estimated at the worst case, actual from usage); "
        "failed requests are not billed.",
        f"Worst case for the whole job {_money(cost['worst_case'])} {cur}; actual {_money(cost['actual'])} {cur}"
        + (f"; budget {cost['max_cost']} {cur}" if cost["max_cost"] is not None else "") + ".",
        f"{r['succeeded']:,} of {r['total']:,} request(s) succeeded -> {doc['output']['path']} ({doc['output']['lines']:,} lines)",
    ]
    if doc["errors"]["lines"]:
        out.append(f"{doc['errors']['lines']:,} request(s) failed -> {doc['errors']['path']}")
    if r["not_run"]:
        out.append(f"{r['not_run']:,} request(s) have not run yet")
    if r["invalid_lines"]:
        out.append(f"{r['invalid_lines']:,} bad input line(s) were left out")
    return out


def _tokens(value) -> str:
    return "unknown" if value is None else f"{value:,}"


def render_job_html(doc: dict) -> str:
    """A self-contained page: the outcome and the two tables, no script, no fetch."""
    import jinja2

    template = jinja2.Environment(autoescape=True).from_string(_PAGE)
    return template.render(doc=doc, report="\n".join(report_lines(doc)),
                           parts=parts_table(doc["parts"], doc["currency"]))


def write_job_html(doc: dict, path: str) -> None:
    """Write the page atomically (a temporary file beside it, then renamed)."""
    page = render_job_html(doc)
    with atomic_write(path) as handle:
        handle.write(page.encode("utf-8"))


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>batchplan job report</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:80em}pre{background:#f6f6f6;padding:1em;overflow:auto}</style>
</head><body>
<h1>batchplan job report</h1>
<p>{{ doc.directory }}: {{ doc.requests.succeeded }} of {{ doc.requests.total }} request(s) succeeded,
{{ doc.requests.failed }} failed for good{% if doc.stopped %}; stopped unfinished: {{ doc.stopped }}{% endif %}.</p>
<h2>Estimated against actual</h2>
<pre>{{ report }}</pre>
<h2>Parts</h2>
<pre>{{ parts }}</pre>
</body></html>
"""
