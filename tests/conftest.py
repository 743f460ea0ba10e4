import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

FIXTURES = Path(__file__).parent / "fixtures"
SAMPLES = Path(__file__).parent.parent / "samples"


def line(custom_id="1", model="qwen-plus", messages=None, url="/v1/chat/completions", **body):
    """One batch-file line as a JSON string."""
    if messages is None and url != "/v1/embeddings":
        messages = [{"role": "user", "content": "Hello!"}]
    payload = {"model": model, **({"messages": messages} if messages is not None else {}), **body}
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": url, "body": payload}, ensure_ascii=False)


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path_factory, monkeypatch):
    """No test reads the developer's own batchplan.toml or BATCHPLAN_* defaults (cli.config)."""
    monkeypatch.setenv("BATCHPLAN_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
    for name in ("BATCHPLAN_REGION", "BATCHPLAN_MAX_COST", "BATCHPLAN_WINDOW", "BATCHPLAN_OUTPUT_TOKENS", "COLUMNS", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def write_batch(tmp_path):
    """Write lines (strings or bytes) to a batch file and return its path."""

    def write(lines, name="batch.jsonl", ending="\n"):
        path = tmp_path / name
        data = b"".join((l if isinstance(l, bytes) else l.encode("utf-8")) + ending.encode() for l in lines)
        path.write_bytes(data)
        return path

    return write


@pytest.fixture
def run():
    """Run the batchplan CLI in-process; returns click's Result (stdout, stderr apart)."""
    from batchplan.cli.main import cli

    def invoke(*args, **kwargs):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False, **kwargs)

    return invoke


def modules_imported(invocations, names, env=None):
    """Which of ``names`` (packages, with their submodules, or modules) a
    fresh interpreter has imported after running each CLI invocation (a list
    of arguments) in turn: what start-up and a plain run pay for."""
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from batchplan.cli import cli\n"
        f"for args in {[[str(a) for a in args] for args in invocations]!r}:\n"
        "    result = CliRunner().invoke(cli, args)\n"
        "    assert result.exit_code == 0, result.output\n"
        f"names = {tuple(names)!r}\n"
        "print(sorted(m for m in sys.modules if m in names or m.split('.')[0] in names))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env).stdout
    return ast.literal_eval(out.strip())
