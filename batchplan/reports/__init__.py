"""Reports: plans, batches and reconciliations rendered for people and
machines. ``text`` draws the tables and warning lines, ``documents`` builds
the JSON documents and per-request rows (docs/json.md), ``batches`` words the
Batch API commands' output, and ``html`` writes the self-contained HTML
report (templates/). Nothing here decides anything: it only renders.
"""
