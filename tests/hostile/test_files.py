"""Hostile files, YAML, seeds and sizes in a merge request, on DuckDB and PostgreSQL: each is
refused at load with one line naming the file (and the key or setting), before anything runs, so
production's objects and view definitions stay byte-identical.

A checkout is an attacker's: symlinks out of it, `paths:` that climb out or start at `/`, YAML
bombs, files too large or nested too deep, and a parse cache committed to say what the SQL is.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.cli.main import main
from runner.checkout import CheckoutError, Mirrors
from runner.engines.base import Engine
from runner.engines.duckdb import DuckDBEngine
from runner.engines.postgres import PostgresEngine
from runner.errors import ProjectError
from runner.limits import DEFAULT_LIMITS, Limits
from runner.pipeline import run_pipeline
from runner.project.loader import load_project
from runner.state.store import StateStore
from tests.support.paths import DEMO
from tests.support.repos import git
from tests.support.warehouses import ENGINES, fresh_database, rows, views_sql

ORDERS = "models/marts/orders.sql"
SCHEMA = "models/schema.yml"
BOMB = "".join(f"{chr(97 + i)}: &{chr(97 + i)} [{','.join([f'*{chr(96 + i)}'] * 9)}]\n"
               for i in range(1, 9))
BOMB = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + BOMB  # 9 levels


def link(target: str | Path) -> Callable[[Path, str], None]:
    """A hostile change: the file at `rel` becomes a symlink to `target`."""
    def change(root: Path, rel: str) -> None:
        path = root / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(target)
    return change


def write(text: str) -> Callable[[Path, str], None]:
    def change(root: Path, rel: str) -> None:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    return change


def replace(old: str, new: str) -> Callable[[Path, str], None]:
    def change(root: Path, rel: str) -> None:
        text = (root / rel).read_text(encoding="utf-8")
        assert old in text, (rel, old)
        (root / rel).write_text(text.replace(old, new), encoding="utf-8")
    return change


def loop(root: Path, rel: str) -> None:
    (root / rel).symlink_to(root / "models/marts/loop_b.sql")
    (root / "models/marts/loop_b.sql").symlink_to(root / rel)


@dataclass(frozen=True)
class Case:
    id: str
    rel: str  # the file the change makes
    change: Callable[[Path, str], None]
    named: str  # the file the refusal names
    says: str  # what the refusal says (a part of its one line)
    limits: Limits = DEFAULT_LIMITS


CASES = [
    Case("model-links-to-passwd", "models/marts/leak.sql", link("/etc/passwd"),
         "models/marts/leak.sql", "symlink that leads outside the repository"),
    Case("model-links-to-environ", ORDERS, link("/proc/self/environ"), ORDERS,
         "symlink that leads outside the repository"),
    Case("model-links-up-and-out", "models/marts/up.sql", link("../../../outside.sql"),
         "models/marts/up.sql", "symlink that leads outside the repository"),
    Case("seed-links-outside", "seeds/raw_leak.csv", link("/etc/passwd"), "seeds/raw_leak.csv",
         "symlink that leads outside the repository"),
    Case("yaml-links-outside", "models/leak.yml", link("/etc/hosts"), "models/leak.yml",
         "symlink that leads outside the repository"),
    Case("singular-test-links-outside", "tests/leak.sql", link("/etc/passwd"), "tests/leak.sql",
         "symlink that leads outside the repository"),
    Case("models-folder-links-to-etc", "models/evil", link("/etc"), "models/evil",
         "symlink that leads outside the repository"),
    Case("seeds-folder-links-to-root", "seeds", link("/"), "seeds",
         "symlink that leads outside the repository"),
    Case("sluice-yml-links-outside", "sluice.yml", link("/etc/hostname"), "sluice.yml",
         "symlink that leads outside the repository"),
    Case("symlink-loop", "models/marts/loop_a.sql", loop, "models/marts/loop_a.sql",
         "cannot resolve the path"),
    Case("paths-models-climbs-out", "sluice.yml", replace("  models: models", "  models: ../../etc"),
         "sluice.yml:9", "paths.models must stay inside the repository"),
    Case("paths-tests-is-root", "sluice.yml", replace("  tests: tests", "  tests: /"),
         "sluice.yml:11", "paths.tests must be a folder inside the repository"),
    Case("paths-seeds-absolute", "sluice.yml", replace("  seeds: seeds", "  seeds: /etc"),
         "sluice.yml:10", "not the absolute path '/etc'"),
    Case("paths-models-climbs-in-the-middle", "sluice.yml",
         replace("  models: models", "  models: models/../../x"), "sluice.yml:9", "goes up with '..'"),
    Case("paths-tests-home", "sluice.yml", replace("  tests: tests", "  tests: ~/secrets"),
         "sluice.yml:11", "paths.tests must be a folder inside the repository"),
    Case("paths-seeds-windows-drive", "sluice.yml", replace("  seeds: seeds", "  seeds: 'C:\\\\x'"),
         "sluice.yml:10", "paths.seeds must be a folder inside the repository"),
    Case("yaml-billion-laughs", "models/bomb.yml", write(BOMB), "models/bomb.yml:",
         "the server setting max_yaml_nodes raises the limit"),
    Case("yaml-nested-deep", "models/deep.yml", write("models: " + "[" * 5000 + "]" * 5000 + "\n"),
         "models/deep.yml:1", "the server setting max_nesting raises it"),
    Case("sluice-yml-bomb", "sluice.yml", write("name: shop\n" + BOMB), "sluice.yml:", "max_yaml_nodes"),
    Case("sql-nested-parentheses", ORDERS, write("select\n" + "(" * 5000 + "1" + ")" * 5000 + " as x\n"),
         f"{ORDERS}:2", "the server setting max_nesting raises it"),
    Case("singular-test-nested-subqueries", "tests/deep.sql",
         write("select * from " + "(select * from " * 40 + "raw.raw_orders" + ") as t" * 40 + "\n"),
         "tests/deep.sql:1", "the server setting max_nesting raises it"),
    Case("model-over-its-size", ORDERS, write("select 1 as x\n" + "-- padding\n" * 200), ORDERS,
         "the server setting max_model_bytes raises it", Limits(max_model_bytes=1024)),
    Case("seed-over-its-size", "seeds/raw_big.csv", write("id,name\n" + "1,x\n" * 2000),
         "seeds/raw_big.csv", "the server setting max_seed_bytes raises it", Limits(max_seed_bytes=4096)),
    Case("yaml-over-its-size", "models/big.yml", write("version: 2\n" + "# padding\n" * 500),
         "models/big.yml", "the server setting max_yaml_bytes raises it", Limits(max_yaml_bytes=2048)),
]


@dataclass
class Production:
    """Production of the demo shop, built once per engine; cases check it did not move."""

    engine: Engine
    state: StateStore
    views: list[tuple[Any, ...]]
    objects: list[str]

    def unchanged(self) -> bool:
        return (sorted(rows(self.engine, views_sql(self.engine))) == self.views
                and sorted(f"{o.schema}.{o.name}" for o in self.engine.objects()) == self.objects)


@pytest.fixture(scope="module", params=ENGINES)
def production(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    home = tmp_path_factory.mktemp(f"prod-{request.param}")
    root = home / "shop"
    shutil.copytree(DEMO, root)
    state = StateStore(f"sqlite:///{home / 'state.db'}")
    with fresh_database() if request.param == "postgres" else _nothing() as url:
        engine: Engine = PostgresEngine(url) if url else DuckDBEngine(home / "warehouse.duckdb")
        project = load_project(root)
        if isinstance(engine, PostgresEngine):
            _as_postgres(root)
            project = load_project(root)
        result = run_pipeline(project, state, engine, "prod")
        assert result.ok, result.build.failed
        yield Production(engine, state, sorted(rows(engine, views_sql(engine))),
                         sorted(f"{o.schema}.{o.name}" for o in engine.objects()))
        engine.close()
        state.close()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


def _as_postgres(root: Path) -> None:
    config = root / "sluice.yml"
    config.write_text(config.read_text().replace("dialect: duckdb", "dialect: postgres"))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_hostile_file_is_refused_in_one_line_and_nothing_runs(
        case: Case, production: Production, tmp_path: Path) -> None:
    root = tmp_path / "mr"
    shutil.copytree(DEMO, root, symlinks=True)
    if isinstance(production.engine, PostgresEngine):
        _as_postgres(root)
    case.change(root, case.rel)

    started = time.perf_counter()
    with pytest.raises(ProjectError) as refused:
        project = load_project(root, limits=case.limits)
        run_pipeline(project, production.state, production.engine, "mr_1")  # never reached
    assert time.perf_counter() - started < 5.0  # a bomb is refused before it goes off (a loaded machine)

    line = str(refused.value)
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith(case.named), line
    assert case.says in line, line
    assert production.unchanged()
    assert production.state.environment("mr_1") is None


def test_a_symlink_that_stays_inside_the_checkout_is_read(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    (root / "seeds/raw_orders_copy.csv").symlink_to("raw_orders.csv")
    project = load_project(root)
    assert "raw.raw_orders_copy" in project.seeds


def test_a_committed_parse_cache_changes_nothing(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    honest = load_project(root, cache_dir=tmp_path / "server-cache").models["marts.orders"].canonical
    poisoned = json.loads((tmp_path / "server-cache/parse-cache.json").read_text())
    poisoned = {key: ["SELECT 'pwned' AS id", []] for key in poisoned}
    for folder in (root / ".sluice/cache", tmp_path / "user-cache"):
        folder.mkdir(parents=True)
        (folder / "parse-cache.json").write_text(json.dumps(poisoned))

    # The repository's own cache, whether named as the cache folder or not, is never read.
    assert load_project(root, cache_dir=root / ".sluice/cache").models["marts.orders"].canonical == honest
    assert load_project(root).models["marts.orders"].canonical == honest
    # The laptop's cache lives in the user's cache folder, not in the project.
    result = CliRunner(env={"XDG_CACHE_HOME": str(tmp_path / "xdg")}).invoke(
        main, ["plan", "--project", str(root), "--dry-run"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "xdg/sluice/parse-cache.json").is_file()
    assert "pwned" not in result.output


def test_the_command_line_shows_a_hostile_file_as_one_line(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    (root / "models/bomb.yml").write_text(BOMB)
    started = time.perf_counter()
    result = CliRunner().invoke(main, ["plan", "--project", str(root)], catch_exceptions=False)
    assert time.perf_counter() - started < 5
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "models/bomb.yml" in lines[0] and "max_yaml_nodes" in lines[0], result.output
    assert not (root / ".sluice/warehouse.duckdb").exists()  # nothing was built


def test_a_committed_symlink_is_refused_from_the_bot_s_checkout(tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(DEMO, work)
    (work / "sluice.yml").unlink()
    (work / "sluice.yml").symlink_to("/etc/hostname")
    (work / "models/marts/leak.sql").symlink_to("/proc/self/environ")
    git(work, "init", "-q", "-b", "main")
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "hostile links")
    sha = git(work, "rev-parse", "HEAD")
    mirrors = Mirrors(tmp_path / "server", allow_local=True)

    with pytest.raises(CheckoutError, match=r"^sluice.yml is a symlink at [0-9a-f]{12}; Sluice reads only"):
        mirrors.read_file("t:shop", str(work), sha, "sluice.yml")
    with mirrors.checkout("t:shop", str(work), sha) as tree, pytest.raises(ProjectError) as refused:
        load_project(tree)
    assert str(refused.value).startswith("sluice.yml: is a symlink that leads outside the repository")
