"""`sluice promote` and `sluice rollback` as an operator's safety net, through the command line on
a DuckDB file and on PostgreSQL: a protected environment takes only a source whose last build and
tests passed (or a forced, audited promotion); a rollback goes one step, and asks before going
further; the audit log says which views moved from which snapshot to which."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from tests.support.cli import sluice
from tests.support.paths import DEMO
from tests.support.warehouses import ENGINES, fresh_database

ORDERS = "models/marts/orders.sql"
AMOUNT = "p.total_amount as amount"


@pytest.fixture(params=ENGINES)
def shop(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[str]]:
    """The demo project, and the options that point `sluice` at it and its warehouse."""
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    if request.param == "duckdb":
        yield ["-p", str(root)]
    else:
        with fresh_database() as url:
            yield ["-p", str(root), "--warehouse-url", url]


def root_of(options: list[str]) -> Path:
    return Path(options[1])


def edit(options: list[str], old: str, new: str) -> None:
    path = root_of(options) / ORDERS
    text = path.read_text()
    assert text.count(old) == 1
    path.write_text(text.replace(old, new))


def data(result: Result) -> object:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def prod(options: list[str]) -> dict[str, str]:
    shown = data(sluice("env", "show", "prod", *options, "--format", "json"))
    assert isinstance(shown, dict)
    return {s["model"]: s["physical"] for s in shown["snapshots"]}


def audit(options: list[str]) -> list[dict]:
    entries = data(sluice("audit", *options[:2], "--env", "prod", "--format", "json"))
    assert isinstance(entries, list)
    return entries


def one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    text = result.output.strip()
    assert text.startswith("error:") and "\n" not in text, text
    return text


def test_promote_into_production_refuses_a_source_whose_tests_failed(shop: list[str]) -> None:
    assert sluice("plan", "prod", *shop).exit_code == 0
    edit(shop, AMOUNT, "- p.total_amount as amount")  # revenue goes negative: a singular test fails
    assert sluice("plan", "mr_1", *shop).exit_code == 1
    before = prod(shop)

    refused = one_line_error(sluice("promote", "mr_1", "prod", *shop))
    assert "prod is protected" in refused and "tests failed" in refused
    assert "assert_no_negative_revenue" in refused and "--force" in refused
    assert prod(shop) == before
    assert "--reason" in one_line_error(sluice("promote", "mr_1", "prod", *shop, "--force"))
    assert prod(shop) == before and audit(shop) == []

    # Not protected: staging takes it (people look at what failed there).
    assert sluice("promote", "mr_1", "staging", *shop).exit_code == 0

    forced = sluice("promote", "mr_1", "prod", *shop, "--force", "--reason", "finance asked, INC-42")
    assert forced.exit_code == 0 and "forced" in forced.output
    assert prod(shop) != before
    [entry] = audit(shop)
    detail = entry["detail"]
    assert entry["action"] == "promote" and entry["actor"]
    assert detail["forced"] is True and detail["reason"] == "finance asked, INC-42"
    assert detail["source_verdict"] == "tests_failed"
    assert "assert_no_negative_revenue" in detail["source_failure"]
    moved = {v["view"]: (v["from"], v["to"]) for v in detail["views"]}
    assert moved["marts.orders"] == (before["marts.orders"], prod(shop)["marts.orders"])
    assert detail["moved"] == len(moved)


def test_promote_into_production_refuses_a_source_whose_last_build_failed(shop: list[str]) -> None:
    assert sluice("plan", "prod", *shop).exit_code == 0
    edit(shop, AMOUNT, "p.total_amount * 2 as amount")
    assert sluice("plan", "mr_2", *shop).exit_code == 0  # passes: mr_2 exists
    edit(shop, "p.total_amount * 2 as amount", "cast('not a number' as integer) as amount")
    assert sluice("plan", "mr_2", *shop).exit_code == 1  # the new version fails to build
    before = prod(shop)

    refused = one_line_error(sluice("promote", "mr_2", "prod", *shop))
    assert "its last build failed" in refused and "marts.orders" in refused
    assert prod(shop) == before

    edit(shop, "cast('not a number' as integer) as amount", "p.total_amount * 2 as amount")
    assert sluice("plan", "mr_2", *shop).exit_code == 0  # fixed: promotes
    promoted = data(sluice("promote", "mr_2", "prod", *shop, "--format", "json"))
    assert isinstance(promoted, dict) and promoted["forced"] is False and "marts.orders" in promoted["moved"]
    [entry] = audit(shop)
    assert "forced" not in entry["detail"] and entry["detail"]["views"]


def test_a_protected_environment_of_the_project_is_guarded_too(shop: list[str]) -> None:
    sluice_yml = root_of(shop) / "sluice.yml"
    sluice_yml.write_text(sluice_yml.read_text().replace("  staging: {}", "  staging:\n    protected: true"))
    assert sluice("plan", "prod", *shop).exit_code == 0
    edit(shop, AMOUNT, "- p.total_amount as amount")
    assert sluice("plan", "mr_1", *shop).exit_code == 1
    assert "staging is protected" in one_line_error(sluice("promote", "mr_1", "staging", *shop))
    assert sluice("promote", "mr_1", "dev", *shop).exit_code == 0


def history(options: list[str]) -> list[dict]:
    shown = data(sluice("env", "show", "prod", *options, "--format", "json"))
    assert isinstance(shown, dict)
    return shown["history"]


def three_versions(shop: list[str]) -> list[dict[str, str]]:
    """prod built, then promoted twice: its three versions, oldest first."""
    assert sluice("plan", "prod", *shop).exit_code == 0
    versions = [prod(shop)]
    twice, thrice = "p.total_amount * 2 as amount", "p.total_amount * 3 as amount"
    for number, (old, new) in enumerate([(AMOUNT, twice), (twice, thrice)], 1):
        edit(shop, old, new)
        assert sluice("plan", f"mr_{number}", *shop).exit_code == 0
        assert sluice("promote", f"mr_{number}", "prod", *shop).exit_code == 0
        versions.append(prod(shop))
    return versions


def test_rollback_goes_one_step_and_asks_before_going_further(shop: list[str]) -> None:
    first, second, _third = three_versions(shop)

    back = data(sluice("rollback", "prod", *shop, "--format", "json"))
    assert prod(shop) == second and isinstance(back, dict) and len(back["undone"]) == 1
    # Once more would go further back than the last change: not without a yes.
    refused = one_line_error(sluice("rollback", "prod", *shop))
    assert "one more step" in refused and "--yes" in refused
    assert prod(shop) == second
    assert sluice("rollback", "prod", *shop, "--yes").exit_code == 0
    assert prod(shop) == first

    entries = audit(shop)
    assert [e["action"] for e in entries[:2]] == ["rollback", "rollback"]
    moved = {v["view"]: (v["from"], v["to"]) for v in entries[0]["detail"]["views"]}
    assert moved["marts.orders"] == (second["marts.orders"], first["marts.orders"])


def test_rollback_to_a_given_promotion(shop: list[str]) -> None:
    first, _second, third = three_versions(shop)
    built = history(shop)[-1]["id"]  # the plan that built prod

    refused = one_line_error(sluice("rollback", "prod", *shop, "--to", str(built)))
    assert "2 changes" in refused and "--yes" in refused and prod(shop) == third
    back = data(sluice("rollback", "prod", *shop, "--to", str(built), "--yes", "--format", "json"))
    assert prod(shop) == first and isinstance(back, dict) and len(back["undone"]) == 2
    assert "no change #999" in one_line_error(sluice("rollback", "prod", *shop, "--to", "999", "--yes"))
    # Both promotions are undone: one step back from here is before the build (nothing).
    assert "no earlier version" in one_line_error(sluice("rollback", "prod", *shop, "--yes"))
    [entry] = audit(shop)[:1]
    assert entry["detail"]["to"] == built and len(entry["detail"]["undone"]) == 2
    moved = {v["view"]: (v["from"], v["to"]) for v in entry["detail"]["views"]}
    assert moved["marts.orders"] == (third["marts.orders"], first["marts.orders"])


def ask(options: list[str], answer: str, *args: str) -> str:
    """`sluice rollback` in a real terminal (a pseudo-terminal), answering its question."""
    primary, secondary = os.openpty()
    command = [str(Path(sys.executable).parent / "sluice"), "rollback", "prod", *options, *args]
    process = subprocess.Popen(command, stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True)
    os.close(secondary)
    output = b""
    deadline = time.time() + 120
    answered = False
    while time.time() < deadline:
        ready, _, _ = select.select([primary], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        if not answered and b"Go on?" in output:
            os.write(primary, answer.encode() + b"\n")
            answered = True
        if process.poll() is not None and not ready:
            break
    process.wait(timeout=30)
    os.close(primary)
    return output.decode(errors="replace")


def test_rollback_asks_in_a_terminal_and_shows_what_moves(shop: list[str]) -> None:
    first, _second, third = three_versions(shop)
    built = history(shop)[-1]["id"]

    said = ask(shop, "n", "--to", str(built))
    assert "moves" in said and "marts.orders" in said and "not rolled back" in said
    assert prod(shop) == third
    said = ask(shop, "y", "--to", str(built))
    assert "rolled back" in said and prod(shop) == first
