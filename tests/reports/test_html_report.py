"""compare --html: a self-contained report, opened in a real headless Chromium.

Chromium comes from Debian's packages: the fixture uses /usr/bin/chromium, or
installs it with apt-get (as root) once per session, or skips with the reason.
The page is loaded twice: as written, where any console message at all (the
page has no script, so a message can only be an error or a blocked fetch)
fails the test; and with a probe script added (allowed by its hash in the
page's own Content-Security-Policy), which writes into the DOM the size of
every chart and the resources the page loaded, read back with --dump-dom.
"""

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from tests.conftest import SAMPLES

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-extensions", "--enable-logging=stderr", "--v=0",
]


def _find_chromium():
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@pytest.fixture(scope="session")
def chromium():
    found = _find_chromium()
    if found:
        return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("chromium is not installed and this is not root, so it cannot be installed (apt-get install chromium)")
    if not shutil.which("apt-get"):
        pytest.skip("chromium is not installed and there is no apt-get to install it from Debian's packages")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], check=True, capture_output=True, timeout=1200, env=env)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"chromium could not be installed from Debian's packages: {exc}")
    found = _find_chromium()
    if not found:
        pytest.skip("apt-get install chromium succeeded but no chromium binary was found")
    return found


def open_page(chromium, path, tmp_path, *extra):
    """Load ``path`` headless; returns (dumped DOM, console lines)."""
    profile = tmp_path / f"profile-{os.path.basename(path)}"
    done = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, "--dump-dom", f"file://{path}"],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [l for l in done.stderr.splitlines() if ":CONSOLE" in l]
    return done.stdout, console


PROBE = """
(function () {
  var charts = {};
  document.querySelectorAll("figure.chart").forEach(function (fig) {
    var svg = fig.querySelector("svg");
    var box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    charts[fig.id] = {width: box.width, height: box.height,
                      shapes: svg ? svg.querySelectorAll("path, rect, use").length : 0};
  });
  var out = document.createElement("pre");
  out.id = "probe";
  out.textContent = JSON.stringify({charts: charts, resources: performance.getEntriesByType("resource").length});
  document.body.appendChild(out);
})();
"""


def with_probe(html: str) -> str:
    """The page with PROBE at the end of its body, allowed by hash only."""
    digest = base64.b64encode(hashlib.sha256(PROBE.encode()).digest()).decode()
    html = html.replace("default-src 'none';", f"default-src 'none'; script-src 'sha256-{digest}';", 1)
    return html.replace("</body>", f"<script>{PROBE}</script></body>", 1)


class Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "xlink:href", "action", "data", "poster") and value:
                self.urls.append(value)


@pytest.fixture
def report(run, tmp_path):
    path = tmp_path / "r.html"
    result = run("compare", SAMPLES / "chat_shared_system.jsonl", "--cache", "expected", "--html", path)
    assert result.exit_code == 0, result.output
    assert "qwen-plus: batch is cheaper by" in result.stdout  # the verdict, on the terminal too
    return path


def test_report_is_self_contained(report):
    html = report.read_text("utf-8")
    assert "Content-Security-Policy" in html and "default-src 'none'" in html
    links = Links()
    links.feed(html)
    assert not [u for u in links.urls if re.match(r"(https?:)?//", u)], links.urls
    assert "<script" not in html and "<link" not in html
    for section in ("summary-table", "realtime-table", "chart-cost", "chart-hit-share", "chart-histogram", "warnings", "invalid-lines"):
        assert f'id="{section}"' in html
    assert "break-even 62.5%" in html and "qwen-plus: batch is cheaper by" in html
    assert "cache=expected" in html


def test_report_opens_in_chromium_with_its_charts(chromium, report, tmp_path):
    dom, console = open_page(chromium, report, tmp_path)
    assert console == []  # no errors, no blocked fetches, nothing at all
    assert "Real-time or batch" in dom and "qwen-plus: batch is cheaper by" in dom

    probed = tmp_path / "probed.html"
    probed.write_text(with_probe(report.read_text("utf-8")), encoding="utf-8")
    dom, console = open_page(chromium, probed, tmp_path)
    assert console == []
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom)
    assert found, "the probe did not run"
    probe = json.loads(found.group(1).replace("&quot;", '"'))
    assert probe["resources"] == 0  # nothing was loaded, from the network or anywhere
    assert set(probe["charts"]) == {"chart-cost", "chart-hit-share", "chart-histogram"}
    for name, chart in probe["charts"].items():
        assert chart["width"] > 100 and chart["height"] > 100, (name, chart)
        assert chart["shapes"] > 5, (name, chart)


def test_the_console_check_catches_errors(chromium, tmp_path):
    # The harness itself: a page that logs an error and fetches an image is caught.
    page = tmp_path / "bad.html"
    page.write_text("<!DOCTYPE html><html><head><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">"
                    "</head><body><img src=\"https://example.invalid/x.png\"></body></html>", encoding="utf-8")
    _, console = open_page(chromium, page, tmp_path)
    assert any("Content Security Policy" in l for l in console)


def test_screenshot_of_the_sample_report(chromium, report, tmp_path):
    shot = tmp_path / "report.png"
    open_page(chromium, report, tmp_path, f"--screenshot={shot}", "--window-size=1200,2400", "--hide-scrollbars")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_html_is_not_overwritten_without_force_and_is_written_atomically(run, tmp_path):
    path = tmp_path / "r.html"
    path.write_text("mine", encoding="utf-8")
    refused = run("compare", SAMPLES / "chat_shared_system.jsonl", "--html", path)
    assert refused.exit_code == 2 and "already exists; pass --force" in refused.output
    assert path.read_text("utf-8") == "mine"
    forced = run("compare", SAMPLES / "chat_shared_system.jsonl", "--html", path, "--force")
    assert forced.exit_code == 0 and path.read_text("utf-8").startswith("<!DOCTYPE html>")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]  # no temporary file left


def test_html_without_the_extra_is_a_one_line_error(run, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "jinja2", None)  # as if not installed
    result = run("compare", SAMPLES / "chat_shared_system.jsonl", "--html", tmp_path / "r.html")
    assert result.exit_code == 2
    assert "pip install 'batchplan[html]'" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r.html").exists()


def test_report_shows_warnings_and_invalid_lines(run, write_batch, tmp_path):
    from tests.conftest import line

    path = write_batch([line("1", max_tokens=100), "{not json", line("2", model="qwen-unknown", max_tokens=100)])
    out = tmp_path / "r.html"
    result = run("compare", path, "--html", out, "--free-quota")
    assert result.exit_code == 1
    html = out.read_text("utf-8")
    assert "invalid line(s) left out of the totals" in html and "requests with no price" in html
    assert re.search(r'<tr class="error"><td style="text-align:left">' + re.escape(f"{path}:2") + "</td>", html)
    assert "cost unknown" in html
