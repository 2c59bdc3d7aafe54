"""The hostile suite's tools: a production built from the demo shop, a copy of the shop for one
merge request's files, the `sluice` command line pointed at that production, and what the
warehouse looks like (views with their definitions, physical objects) to show nothing changed."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from bot.cli.main import main
from runner.engines import open_engine
from tests.support.paths import DEMO
from tests.support.warehouses import physical_objects, rows, views_sql


@dataclass(frozen=True)
class Production:
    """The shop's production on one engine, and where its state lives."""

    base: Path
    dialect: str
    warehouse_url: str
    state_url: str

    def shop(self, name: str) -> Path:
        """A fresh copy of the shop in the production's dialect (a merge request's checkout)."""
        root = self.base / "cases" / name
        if root.exists():
            shutil.rmtree(root)
        shutil.copytree(DEMO, root)
        config = root / "sluice.yml"
        config.write_text(config.read_text().replace("dialect: duckdb", f"dialect: {self.dialect}"))
        return root

    def sluice(self, root: Path, *args: str) -> Result:
        return CliRunner().invoke(main, [*args, "--project", str(root), "--warehouse-url",
                                         self.warehouse_url, "--state-url", self.state_url],
                                  catch_exceptions=False)

    def look(self) -> tuple[Any, ...]:
        """Every view with its definition, byte for byte, and every physical object."""
        engine = open_engine(self.warehouse_url)
        try:
            return (sorted(map(tuple, rows(engine, views_sql(engine)))), sorted(physical_objects(engine)))
        finally:
            engine.close()


def build_production(base: Path, dialect: str, warehouse_url: str) -> Production:
    production = Production(base, dialect, warehouse_url, f"sqlite:///{base / 'state.db'}")
    result = production.sluice(production.shop("production"), "plan", "prod")
    assert result.exit_code == 0, result.output
    return production
