"""The hostile suite's warehouse: the demo shop's production, built once per engine (a DuckDB file,
a database on the real PostgreSQL server), that every hostile case then tries to reach."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hostile import Production, build_production
from tests.support.warehouses import ENGINES, fresh_database


@pytest.fixture(scope="module", params=ENGINES)
def production(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    base: Path = tmp_path_factory.mktemp(f"hostile-{request.param}")
    if request.param == "postgres":
        with fresh_database() as url:
            yield build_production(base, "postgres", url)
    else:
        yield build_production(base, "duckdb", f"duckdb:///{base / 'warehouse.duckdb'}")
