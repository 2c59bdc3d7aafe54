"""Fixtures shared by every suite: a copy of the demo shop (plain and as a git repository), real
warehouses (DuckDB file and PostgreSQL, from `support.warehouses`) and real state stores (a SQLite
file, or a fresh PostgreSQL database). Helpers live in `tests/support/`, never here.

Nothing is mocked: every test plans, builds, tests and points views for real.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.engines.base import Engine
from runner.state.store import StateStore
from tests.support.paths import DEMO
from tests.support.repos import Shop
from tests.support.warehouses import fresh_database

pytest_plugins = ["tests.support.fakeforge", "tests.support.warehouses"]

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
