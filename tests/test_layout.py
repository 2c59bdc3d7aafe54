"""The shape of the tree, as the README's layout describes it: the dependency arrow is
`bot → runner → policies` and never back, planning is pure, registries are the only places that
name forges and warehouse schemes."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import REPO


def imports_of(package: str) -> dict[str, set[str]]:
    """Each module of `package` -> the top-level packages it imports (sluice's own only)."""
    found: dict[str, set[str]] = {}
    for path in sorted((REPO / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
            elif isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
        found[str(path.relative_to(REPO))] = names & {"bot", "runner", "policies"}
    return found


@pytest.mark.parametrize(("package", "forbidden"), [("runner", {"bot"}), ("policies", {"bot", "runner"})])
def test_the_dependency_arrow_points_one_way(package: str, forbidden: set[str]) -> None:
    wrong = {module: sorted(names & forbidden) for module, names in imports_of(package).items()
             if names & forbidden}
    assert wrong == {}


def test_planning_imports_no_database_and_no_engine() -> None:
    check = ("import sys, runner.plan.builder, runner.plan.definition; "
             "loaded = [m for m in sys.modules if m.split('.')[0] in ('sqlalchemy', 'duckdb', 'psycopg')"
             " or m in ('runner.engines.duckdb', 'runner.engines.postgres', 'runner.state.store')]; "
             "assert not loaded, loaded")
    subprocess.run([sys.executable, "-c", check], check=True, cwd=REPO)


def test_forge_names_and_warehouse_schemes_live_in_their_registries() -> None:
    """Outside the forge and engine modules, no code spells a forge's name or a URL scheme."""
    spelled: list[str] = []
    # The registries and their modules; the state store (SQLite or PostgreSQL) is no warehouse.
    allowed = {Path("bot/forges"), Path("runner/engines"), Path("runner/state")}
    for path in sorted(REPO.glob("*/**/*.py")):
        rel = path.relative_to(REPO)
        if rel.parts[0] not in ("bot", "runner", "policies") or any(a in rel.parents for a in allowed):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in (
                    "gitlab", "github", "duckdb", "postgres", "postgresql"):
                spelled.append(f"{rel}:{node.lineno}: {node.value!r}")
    assert spelled == []
