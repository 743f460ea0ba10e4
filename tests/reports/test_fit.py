"""reports.fit: a table reduced in a defined order until it fits, never a wrapped row."""

from batchplan.reports.fit import Cell, Column, drop, fit_table, merge, narrow, wrap

COLUMNS = [Column("name", "name", align="left"), Column("kind", "kind", align="left"),
           Column("count", "number of things", "n"), Column("cost", "cost in dollars", "$"),
           Column("note", "note", align="left")]
ROWS = [{"name": "alpha", "kind": "x", "count": "1,000", "cost": Cell("12.50 (50%)", "50%"), "note": ""},
        {"name": "beta-gamma", "kind": "y", "count": "20", "cost": Cell("3.00 (10%)", "10%"), "note": ""}]
STEPS = (narrow("cost"), merge("kind", "name"), drop("count"))


def widths(fitted):
    return max(len(x) for x in fitted.lines)


def test_unlimited_is_the_full_table():
    fitted = fit_table(COLUMNS, ROWS, None, STEPS)
    assert "number of things" in fitted.lines[0] and "note" in fitted.lines[0] and not fitted.legend


def test_each_width_takes_the_first_reduction_that_fits():
    full = widths(fit_table(COLUMNS, ROWS, None, STEPS))
    seen = []
    for width in range(full, 10, -1):
        fitted = fit_table(COLUMNS, ROWS, width, STEPS)
        assert widths(fitted) <= width
        seen.append((tuple(fitted.lines[0].split()), tuple(fitted.left_out)))
    headers = [h for h, _ in dict.fromkeys(seen)]
    # full -> short headers, empty column gone -> cost narrowed -> kind merged into name -> count dropped -> records
    assert headers[0] == ("name", "kind", "number", "of", "things", "cost", "in", "dollars", "note")
    assert headers[1] == ("name", "kind", "n", "$")
    assert ("name", "kind", "$") in headers and headers.index(("name", "kind", "n", "$")) < headers.index(("name", "kind", "$"))
    narrowest = fit_table(COLUMNS, ROWS, 11, STEPS)
    assert narrowest.lines[0] == "alpha"  # one record per row at last: "  header  value" lines
    assert "1,000" in "\n".join(narrowest.lines) and "12.50" in "\n".join(narrowest.lines)  # nothing left out


def test_legend_spells_out_the_short_headers_shown():
    fitted = fit_table(COLUMNS, ROWS, 30, STEPS)
    assert "n = number of things" in fitted.legend and "$ = cost in dollars" in fitted.legend


def test_wrap_keeps_long_words_whole():
    assert wrap(["a " * 30 + "/a/very/long/path/that/cannot/break"], 20)[-1].strip() == "/a/very/long/path/that/cannot/break"
    assert wrap(["short"], None) == ["short"]
