"""What a user of any Unix tool expects: - for standard input and output, a table
that fits the terminal, shell completion, defaults from the environment and
config files, no colour codes where they do not belong."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
from decimal import Decimal

import pytest

from batchplan.cli.main import cli
from tests.conftest import SAMPLES, line

SAMPLE = SAMPLES / "chat_shared_system.jsonl"
ALL_SAMPLES = sorted(SAMPLES.glob("*.jsonl"))


def cli_env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BATCHPLAN_", "COLUMNS", "NO_COLOR"))}
    env.update({"PYTHONPATH": os.pathsep.join(p for p in sys.path if p), **extra})
    return env


# -- standard input and output ------------------------------------------------------

def test_compare_reads_standard_input_through_a_real_pipe(tmp_path):
    data = SAMPLE.read_bytes()
    piped = subprocess.run([sys.executable, "-m", "batchplan", "compare", "-", "--json"], input=data,
                           capture_output=True, env=cli_env(BATCHPLAN_CONFIG_DIR=str(tmp_path)), cwd=tmp_path)
    assert piped.returncode == 0, piped.stderr
    from_pipe = json.loads(piped.stdout)
    from_file = json.loads(subprocess.run([sys.executable, "-m", "batchplan", "compare", str(SAMPLE), "--json"],
                                          capture_output=True, check=True, env=cli_env(BATCHPLAN_CONFIG_DIR=str(tmp_path)),
                                          cwd=tmp_path).stdout)
    assert from_pipe["requests"] == from_file["requests"] == 12
    assert from_pipe["total"] == from_file["total"]
    assert [f["path"] for f in from_pipe["files"]] == ["-"]


def test_stdin_lines_are_named_dash_and_validate_reads_it_too(run):
    data = "\n".join([line("a", max_tokens=10), "not json", line("b", max_tokens=10)]) + "\n"
    result = run("compare", "-", input=data)
    assert result.exit_code == 1
    assert "-:2: not valid JSON" in result.stderr
    assert "TOTAL" in result.stdout
    checked = run("validate", "-", input=SAMPLE.read_bytes())
    assert checked.exit_code == 0, checked.stderr
    assert f"-: valid: 12 requests, {SAMPLE.stat().st_size:,} bytes" in checked.stdout  # the size of what was read


@pytest.mark.parametrize("option, reason", [
    (["--sample", "0.5"], "standard input cannot be sampled"),
    (["--cluster", "local"], "standard input cannot be planned on a cluster"),
])
def test_sample_and_cluster_refuse_stdin_in_one_line(run, option, reason):
    result = run("compare", "-", *option, input=SAMPLE.read_bytes())
    assert result.exit_code == 2
    assert result.stderr.startswith(f"batchplan: error: -: {reason}")
    assert len(result.stderr.strip().splitlines()) == 1 and "save it to a file" in result.stderr


def test_compressed_stdin_is_refused_like_a_compressed_file(run):
    import gzip

    result = run("compare", "-", input=gzip.compress(SAMPLE.read_bytes()))
    assert result.exit_code == 2 and "-: is gzip-compressed" in result.stderr


def test_per_request_dash_writes_rows_to_stdout_and_no_table(run):
    result = run("compare", SAMPLE, "--per-request", "-")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(rows) == 12 and rows[0]["custom_id"] == "support-001" and rows[0]["file"] == str(SAMPLE)
    assert not os.path.exists("-")
    both = run("compare", SAMPLE, "--per-request", "-", "--json")
    assert both.exit_code == 2 and "standard output" in both.stderr


def test_split_reads_stdin_and_names_its_parts_stdin(run, tmp_path):
    data = SAMPLE.read_bytes()
    result = run("split", "-", "--out", tmp_path / "parts", input=data)
    assert result.exit_code == 0, result.stderr
    (part,) = (tmp_path / "parts").glob("stdin.*.part-001.jsonl")
    assert part.read_bytes() == data
    manifest = json.loads((tmp_path / "parts" / "stdin.manifest.json").read_text())
    assert manifest["source"]["path"] == "-"


def test_reconcile_reads_its_input_or_its_output_from_stdin(run):
    from tests.conftest import FIXTURES

    folder = FIXTURES / "reconcile"
    files = run("reconcile", folder / "input.jsonl", folder / "output.jsonl", "--json")
    piped_input = run("reconcile", "-", folder / "output.jsonl", "--json", input=(folder / "input.jsonl").read_bytes())
    piped_output = run("reconcile", folder / "input.jsonl", "-", "--json", input=(folder / "output.jsonl").read_bytes())
    assert files.exit_code == piped_input.exit_code == piped_output.exit_code
    a, b, c = (json.loads(r.stdout) for r in (files, piped_input, piped_output))
    assert a["total"] == b["total"] == c["total"]
    twice = run("reconcile", "-", "-", input=(folder / "input.jsonl").read_bytes())
    assert twice.exit_code == 2 and "standard input was read already" in twice.stderr


@pytest.fixture
def fake_api(tmp_path, monkeypatch):
    from tests.fakes.dashscope_server import FakeDashScope

    with FakeDashScope(api_key="sk-conventions") as server:
        monkeypatch.setenv("DASHSCOPE_API_KEY", "sk-conventions")
        monkeypatch.setenv("DASHSCOPE_BASE_URL", server.base_url)
        monkeypatch.setenv("BATCHPLAN_HOME", str(tmp_path / "home"))
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        yield server


def test_submit_reads_stdin_once_and_uploads_exactly_it(run, fake_api, tmp_path):
    from batchplan.jobs.ledger import Ledger

    data = SAMPLE.read_bytes()
    asked = run("submit", "-", input=data)  # the pipe is the data: nothing to answer a prompt with
    assert asked.exit_code == 2 and "pass --yes" in asked.stderr and not fake_api.files
    result = run("submit", "-", "--yes", input=data)
    assert result.exit_code == 0, result.stderr
    (uploaded,) = fake_api.files.values()
    assert uploaded["bytes"] == data
    (batch,) = fake_api.batches.values()
    assert batch["metadata"]["batchplan_path"] == "-"
    with Ledger(tmp_path / "home") as ledger:
        (entry,) = ledger.entries()
    assert entry.path == "-" and entry.batch_id == batch["id"]
    again = run("submit", "-", "--yes", input=data)  # the same content: refused, as from a file
    assert again.exit_code == 1 and len(fake_api.batches) == 1


# -- a table that fits the terminal ----------------------------------------------------

@pytest.mark.parametrize("width", [80, 120, 200])
def test_compare_fits_the_terminal_width_without_wrapping_a_row(run, width):
    result = run("compare", *ALL_SAMPLES, "--cache", "expected", env={"COLUMNS": str(width)})
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(x) for x in lines) <= width
    # Every model row stays one line, with its costs.
    row = next(x for x in lines if x.startswith("qwen-plus [thinking]"))
    assert "0.102476" in row and "0.051238" in row


def test_narrow_tables_shorten_headers_then_leave_columns_out_in_order(run):
    wide = run("compare", *ALL_SAMPLES, env={"COLUMNS": "250"}).stdout
    narrow = run("compare", *ALL_SAMPLES, env={"COLUMNS": "80"}).stdout
    unlimited = run("compare", *ALL_SAMPLES).stdout  # not a terminal, no $COLUMNS: every column
    assert wide == unlimited and "output tokens (assumed)" in wide and "Columns:" not in wide
    assert "in tok" in narrow and "in tok = input tokens" in narrow.replace("\n  ", " ")
    left_out = next(x for x in narrow.replace("\n  ", " ").splitlines() if x.startswith("Left out at this width"))
    assert "requests, saving" in left_out  # PLAN_STEPS: requests goes before saving
    assert "output tokens" not in left_out  # still shown at 80


def test_prices_table_fits_too(run):
    full = run("prices").stdout
    narrow = run("prices", env={"COLUMNS": "80"}).stdout
    table = narrow.split("\n\n")[0].splitlines()
    assert max(len(x) for x in table) <= 80 < max(len(x) for x in full.split("\n\n")[0].splitlines())
    assert "Left out at this width: source, context/max in/max out" in narrow.replace("\n  ", " ")


def test_json_and_per_request_ignore_the_width(run, tmp_path):
    plain = run("compare", SAMPLE, "--json").stdout
    assert run("compare", SAMPLE, "--json", env={"COLUMNS": "40"}).stdout == plain
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    run("compare", SAMPLE, "--per-request", a)
    run("compare", SAMPLE, "--per-request", b, env={"COLUMNS": "40"})
    assert a.read_bytes() == b.read_bytes()


# -- shell completion ----------------------------------------------------------------

def complete(run, words, cword):
    return run(env={"_BATCHPLAN_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)},
               prog_name="batchplan")


def test_completion_lists_the_commands_and_their_subcommands(run):
    result = complete(run, "batchplan ", 1)
    assert result.exit_code == 0
    offered = {x.split(",", 1)[1] for x in result.stdout.splitlines()}
    assert {"compare", "prices", "validate", "split", "submit", "status", "list", "wait", "cancel", "download",
            "reconcile", "config", "ledger"} <= offered
    assert {x.split(",", 1)[1] for x in complete(run, "batchplan ledger ", 2).stdout.splitlines()} == {"rebuild"}
    options = {x.split(",", 1)[1] for x in complete(run, "batchplan compare --reg", 2).stdout.splitlines()}
    assert options == {"--region"}


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F"), ("zsh", "compdef"), ("fish", "complete --no-files")])
def test_completion_scripts_for_bash_zsh_and_fish(run, shell, marker):
    result = run(env={"_BATCHPLAN_COMPLETE": f"{shell}_source"}, prog_name="batchplan")
    assert result.exit_code == 0 and marker in result.stdout and "_BATCHPLAN_COMPLETE" in result.stdout


# -- no colour codes -------------------------------------------------------------------

def test_no_colour_codes_in_a_pipe_or_with_no_color(tmp_path):
    env = cli_env(BATCHPLAN_CONFIG_DIR=str(tmp_path))
    piped = subprocess.run([sys.executable, "-m", "batchplan", "compare", str(SAMPLE), "--cache", "best"],
                           capture_output=True, env=env, cwd=tmp_path)
    assert piped.returncode == 0 and b"\x1b" not in piped.stdout + piped.stderr
    # On a terminal, with NO_COLOR set: still none.
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "batchplan", "compare", str(SAMPLE), "--help"],
                            stdout=follower, stderr=subprocess.PIPE, env={**env, "NO_COLOR": "1"}, cwd=tmp_path)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.close(leader)
    assert proc.wait() == 0
    assert b"--region" in out and b"\x1b" not in out


# -- defaults from the environment and config files ------------------------------------

@pytest.fixture
def dirs(tmp_path, monkeypatch):
    user, project = tmp_path / "user", tmp_path / "project"
    user.mkdir()
    project.mkdir()
    monkeypatch.setenv("BATCHPLAN_CONFIG_DIR", str(user))
    monkeypatch.chdir(project)
    for name in ("BATCHPLAN_REGION", "BATCHPLAN_MAX_COST", "BATCHPLAN_WINDOW", "BATCHPLAN_OUTPUT_TOKENS"):
        monkeypatch.delenv(name, raising=False)
    return user, project


def settings(run, **env):
    result = run("config", "--json", env=env)
    assert result.exit_code == 0, result.stderr
    return {k: (v["value"], v["source"]) for k, v in json.loads(result.stdout)["settings"].items()}


def test_precedence_command_line_env_project_file_user_file(run, dirs):
    user, project = dirs
    (user / "batchplan.toml").write_text('region = "cn"\nwindow = "72h"\noutput_tokens = 100\nmax_cost = 9\n')
    (project / "batchplan.toml").write_text('# this project\nwindow = "48h"\nmax-cost = 25.10\n')
    got = settings(run, BATCHPLAN_MAX_COST="30")
    assert got["region"] == ("cn", f"{user / 'batchplan.toml'}:1")
    assert got["window"] == ("48h", "batchplan.toml:2")
    assert got["output_tokens"] == (100, f"{user / 'batchplan.toml'}:3")
    assert got["max_cost"] == ("30", "BATCHPLAN_MAX_COST")
    assert settings(run)["max_cost"] == ("25.10", "batchplan.toml:3")  # exact: parsed as a decimal, not a float
    text = run("config").stdout
    assert "batchplan.toml:2" in text and "(read)" in text

    # The values reach the commands; the command line beats them.
    doc = json.loads(run("compare", SAMPLE, "--json").stdout)
    assert doc["currency"] == "CNY" and doc["total"]["output_tokens"] == 12 * 100
    doc = json.loads(run("compare", SAMPLE, "--json", "--region", "intl", "--output-tokens", "7").stdout)
    assert doc["currency"] == "USD" and doc["total"]["output_tokens"] == 12 * 7
    # A configured --output-tokens gives way to another assumption chosen on the command line.
    ratio = run("compare", SAMPLE, "--json", "--output-ratio", "1")
    assert ratio.exit_code == 0, ratio.stderr
    assert json.loads(ratio.stdout)["total"]["output_tokens"] == json.loads(ratio.stdout)["total"]["input_tokens"]
    assert "[default: 48h]" in run("submit", "--help").stdout


def test_defaults_when_nothing_is_set(run, dirs):
    got = settings(run)
    assert got == {"region": ("intl", "default"), "max_cost": (None, "default"), "window": ("24h", "default"),
                   "output_tokens": (None, "default")}


@pytest.mark.parametrize("text, message", [
    ('region = "cn"\nmax_cost = "lots"\n', "batchplan.toml:2: max_cost: 'lots' is not a number"),
    ('window = "30d"\n', "batchplan.toml:1: window: '30d' is outside the allowed 24h-336h"),
    ('\nregoin = "cn"\n', "batchplan.toml:2: unknown setting 'regoin'"),
    ('output_tokens = -5\n', "batchplan.toml:1: output_tokens: -5 is not a number of tokens"),
    ('region = "cn"\nwindow = \n', "batchplan.toml:2: Invalid value"),
])
def test_a_bad_value_is_path_line_reason(run, dirs, text, message):
    (dirs[1] / "batchplan.toml").write_text(text)
    result = run("compare", SAMPLE)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"batchplan: error: {message}"), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_bad_variable_names_it(run, dirs):
    result = run("config", env={"BATCHPLAN_REGION": "mars"})
    assert result.exit_code == 2 and "BATCHPLAN_REGION: \"mars\" is not a region" in result.stderr


def test_a_configured_region_does_not_redirect_commands_that_use_the_ledgers(dirs):
    from batchplan.cli.config import Setting, Value, default_map

    region = Value(Setting("region", str, "intl", ""), "cn", "batchplan.toml:1")
    window = Value(Setting("window", str, "24h", ""), "48h", "batchplan.toml:2")
    mapped = default_map(cli, {"region": region, "window": window})
    assert mapped["compare"] == {"region": "cn", "window": "48h"} and mapped["submit"]["region"] == "cn"
    assert "status" not in mapped and "download" not in mapped


def test_money_from_config_stays_exact(dirs):
    (dirs[1] / "batchplan.toml").write_text("max_cost = 0.1\n")
    from batchplan.cli.config import load

    assert load()["max_cost"].value == Decimal("0.1")


def test_stdin_reader_hands_out_its_head_then_the_rest_in_any_sizes():
    import io

    from batchplan.planning.reading import StdinReader

    data = b"0123456789" * 5
    for size in (1, 3, 6, 7, 50, 100):
        reader = StdinReader(io.BytesIO(data))
        assert reader._peek(6) == data[:6]
        got = b""
        while chunk := reader.read(size):
            got += chunk
        assert got == data and reader.size == len(data)
    reader = StdinReader(io.BytesIO(data))
    reader._peek(6)
    assert reader.read() == data


def test_a_configured_budget_guards_what_spends_and_leaves_compare_alone(run, dirs):
    _, project = dirs
    (project / "batchplan.toml").write_text("max_cost = 0.000001\n")
    # compare spends nothing: the configured budget does not make it a gate (exit 4).
    plain = run("compare", SAMPLE, "--json")
    assert plain.exit_code == 0, plain.stderr
    gated = run("compare", SAMPLE, "--json", "--max-cost", "0.000001")
    assert gated.exit_code == 4
    from batchplan.cli.config import default_map, load
    from batchplan.cli.main import cli

    defaults = default_map(cli, load())
    assert "compare" not in defaults
    assert {name for name, mine in defaults.items() if "max_cost" in mine} == {"submit", "run", "pilot"}


def test_a_closed_pipe_ends_quietly(tmp_path):
    # `batchplan ... | head`: the reader goes away; no message, no traceback, exit 141 as a shell reports SIGPIPE.
    import subprocess
    import sys

    lines = "\n".join(json.dumps({"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
                                  "body": {"model": "qwen-plus", "messages": [{"role": "user", "content": f"q {i}"}]}})
                      for i in range(3000))
    path = tmp_path / "many.jsonl"
    path.write_text(lines + "\n")
    proc = subprocess.Popen([sys.executable, "-m", "batchplan", "compare", str(path), "--per-request", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as head does after its lines
    stderr = proc.stderr.read().decode()
    assert proc.wait() == 141, stderr
    assert "Traceback" not in stderr and "error" not in stderr
