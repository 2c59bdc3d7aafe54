"""The README is true for a newcomer: its short tour runs as written on what `sluice init`
creates, and every error class it promises a one-line message for names its file and line."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli.main import main
from tests.support.paths import DEMO, REPO
from tests.support.repos import GIT_ENV

README = (REPO / "README.md").read_text(encoding="utf-8")


def section_block(heading: str) -> list[str]:
    """The first code block after `heading`, as lines without their trailing comments."""
    after = README.split(heading, 1)[1]
    block = re.search(r"```\n(.*?)```", after, re.DOTALL)
    assert block, heading
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_the_short_tour_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SLUICE_STATE_URL", raising=False)
    monkeypatch.delenv("SLUICE_WAREHOUSE_URL", raising=False)
    ran = []
    for line in section_block("## A short tour"):
        command, _, comment = line.partition("  #")
        words = shlex.split(command)
        if words[0] == "cd":
            monkeypatch.chdir(Path.cwd() / words[1])
        elif words[0] == "git":
            subprocess.run(words, check=True, capture_output=True)
        else:
            assert words[0] == "sluice", line
            result = CliRunner().invoke(main, words[1:], catch_exceptions=False)
            assert result.exit_code == 0, f"{line}\n{result.output}"
            ran.append(words[1])
        if "edit a model" in comment:  # what the tour asks the reader to do
            model = re.search(r"edit a model: (\S+?)\.\.\.", comment)
            assert model, comment
            path = Path(model.group(1))
            text = path.read_text()
            assert "    name,\n" in text
            path.write_text(text.replace("    name,\n", "    upper(name) as name,\n"))
    assert {"init", "plan", "promote", "rollback", "env", "test", "diff", "lineage", "janitor"} <= set(ran)


PROMISE = re.compile(r"Errors you can cause \(([^)]*)\) are one line naming the file\s+and line")

# The README's words for each error class -> (file to write, how to break it).
BREAKAGES = {
    "bad YAML": ("models/schema.yml", lambda t: t.replace("  - name: stg_orders\n",
                                                          "  - name: stg_orders\n   bad: [\n")),
    "two statements in a model": ("models/marts/broken.sql",
                                  lambda t: "select 1;\ndrop table marts.orders\n"),
    "an unknown table": ("models/marts/orders.sql",
                         lambda t: t.replace("from staging.stg_orders as o", "from staging.nope as o")),
    "a function outside the SQL allowlist": (
        "models/marts/orders.sql", lambda t: t.replace("    o.status,\n",
                                                       "    o.status,\n    getenv('HOME') as home,\n")),
    "a cycle": ("models/staging/stg_orders.sql",
                lambda t: t.replace("from raw.raw_orders",
                                    "from raw.raw_orders join marts.orders as x on true")),
    "a removed column that a downstream model still reads": (
        "models/marts/orders.sql", lambda t: t.replace("    o.status,\n", "")),
}


def promised() -> list[str]:
    found = PROMISE.search(README.replace("\n", " ").replace("  ", " "))
    assert found, "the README no longer promises one-line errors"
    return [p.strip() for p in found.group(1).split(",")]


def test_the_readme_lists_the_error_classes_tested_here():
    assert promised() == list(BREAKAGES)


@pytest.mark.parametrize("what", list(BREAKAGES))
def test_each_promised_error_is_one_line_naming_its_file_and_line(tmp_path: Path, what: str):
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    if "removed column" in what:  # a plan error: there must be a production to compare with
        assert CliRunner().invoke(main, ["plan", "prod", "-p", str(root)]).exit_code == 0
    rel, breakage = BREAKAGES[what]
    path = root / rel
    path.write_text(breakage(path.read_text() if path.exists() else ""))
    result = CliRunner().invoke(main, ["plan", "prod", "-p", str(root)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert re.match(r"^error: models/[\w/.]+\.(sql|yml):\d+: ", lines[0]), lines[0]
