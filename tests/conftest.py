"""Shared fixtures for the runner's end-to-end tests: a copy of the demo shop, a real DuckDB
warehouse file, and real state stores (a SQLite file, or a fresh PostgreSQL database).

Nothing is mocked: every test plans, builds, tests and points views for real.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from engines import fresh_database

from runner.engines.base import Engine
from runner.project.loader import load_project
from runner.project.nodes import Project
from runner.state.store import StateStore

pytest_plugins = ["fakeforge", "engines"]  # fake_gitlab / fake_github servers

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "bot" / "demo" / "project"

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Sluice Tests", "GIT_AUTHOR_EMAIL": "tests@sluice.test",
    "GIT_COMMITTER_NAME": "Sluice Tests", "GIT_COMMITTER_EMAIL": "tests@sluice.test",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Shop:
    """A copy of the demo project that a test may edit, and commit when it is a git repository."""

    root: Path

    def load(self) -> Project:
        return load_project(self.root)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def read(self, rel: str) -> str:
        """The file's text with its line endings as they are (the demo's seeds use CRLF)."""
        return self.path(rel).read_bytes().decode("utf-8")

    def write(self, rel: str, text: str) -> None:
        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))

    def edit(self, rel: str, old: str, new: str) -> None:
        """Replace `old` (which must occur exactly once) with `new` in one project file."""
        text = self.read(rel)
        assert text.count(old) == 1, f"{rel} holds {text.count(old)} copies of {old!r}"
        self.write(rel, text.replace(old, new))

    def remove(self, rel: str) -> None:
        self.path(rel).unlink()

    def git(self, *args: str) -> str:
        env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(self.root), **GIT_ENV}
        done = subprocess.run(["git", *args], cwd=self.root, env=env, check=True,
                              capture_output=True, text=True)
        return done.stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


def edit_model(root: Path, rel: str, old: str, new: str) -> None:
    """Edit one file of a project by string replacement; `old` must occur exactly once."""
    Shop(root).edit(rel, old, new)


@pytest.fixture
def shop(tmp_path: Path) -> Shop:
    """A fresh copy of bot/demo/project."""
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    return Shop(root)


@pytest.fixture
def git_shop(shop: Shop) -> Shop:
    """The demo shop as a git repository: one commit on `main`."""
    shop.git("init", "-q", "-b", "main")
    shop.write(".gitignore", ".sluice/\n")
    shop.commit("the demo shop")
    return shop


@pytest.fixture
def warehouse(any_warehouse: Engine) -> Engine:
    """The engine tests run on DuckDB and on the real PostgreSQL server alike."""
    return any_warehouse


# -- state stores ---------------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'state.db'}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of its own (SQLAlchemy's psycopg URL), dropped after the test."""
    with fresh_database() as url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest) -> str:
    """The same test against a SQLite state file and a PostgreSQL state database."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def state(sqlite_url: str) -> Iterator[StateStore]:
    """A SQLite state store: the fast default."""
    store = StateStore(sqlite_url)
    yield store
    store.close()


@pytest.fixture
def pg_state(pg_url: str) -> Iterator[StateStore]:
    """A state store in a fresh PostgreSQL database."""
    store = StateStore(pg_url)
    yield store
    store.close()


# -- looking into the warehouse -------------------------------------------------------------------


def rows(engine: Engine, sql: str) -> list[tuple[Any, ...]]:
    with engine.cursor() as cursor:
        _, result = cursor.fetch(sql)
    return result


def views_sql(engine: Engine) -> str:
    if engine.dialect == "postgres":
        return ("select schemaname, viewname, definition from pg_views "
                "where schemaname not in ('pg_catalog', 'information_schema')")
    return "select schema_name, view_name, sql from duckdb_views() where not internal"


def view_target(engine: Engine, schema: str, name: str) -> str:
    """The physical object a view reads, from the view's SQL text in the engine's catalog."""
    found = [(sql,) for s, n, sql in rows(engine, views_sql(engine)) if s == schema and n == name]
    assert found, f"there is no view {schema}.{name}"
    match = re.search(r"\bFROM\s+([\w\".]+)\s*;?\s*$", found[0][0], re.IGNORECASE)
    assert match, found[0][0]
    return match.group(1).replace('"', "")


def env_views(engine: Engine, environment: str) -> dict[str, str]:
    """`schema.table` -> the physical object its view reads, for one environment's views."""
    out: dict[str, str] = {}
    for schema, name, _ in rows(engine, views_sql(engine)):
        if schema.startswith("sluice__"):
            continue
        if environment == "prod" and "__" not in schema:
            out[f"{schema}.{name}"] = view_target(engine, schema, name)
        elif schema.endswith(f"__{environment}"):
            out[f"{schema.removesuffix(f'__{environment}')}.{name}"] = view_target(engine, schema, name)
    return out


def physical_objects(engine: Engine) -> set[str]:
    """Every object in Sluice's physical schemas, as `schema.name`."""
    return {f"{o.schema}.{o.name}" for o in engine.objects() if o.schema.startswith("sluice__")}
