"""What a loaded project is made of: models, seeds, sources, tests and exposures, and the names
a table reference can resolve to. Plain frozen values; `loader.load_project` makes them."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from runner.project.config import ProjectConfig
from runner.project.dag import DAG
from runner.project.parsing import TableRef

if TYPE_CHECKING:
    from runner.safety.allowlist import Allowlist

MATERIALIZATIONS = ("table", "view")
COLUMN_TESTS = ("not_null", "unique", "accepted_values", "relationships")


@dataclass(frozen=True)
class DataTest:
    """One data test: a column test from YAML (dbt semantics) or a singular SQL test file."""

    kind: str  # not_null | unique | accepted_values | relationships | singular (dbt: its test's name)
    model: str | None
    column: str | None
    file: str
    line: int | None
    values: tuple[Any, ...] = ()
    to: str | None = None  # relationships: the model or seed the column must point into
    field: str | None = None
    sql: str | None = None  # singular: canonical query returning the failing rows
    depends_on: tuple[str, ...] = ()
    # dbt's test settings (dbt projects): the test's own name, and when failing rows warn or fail.
    label: str | None = None
    severity: str = "error"  # "warn": failing rows are reported, never a failure
    warn_if: str = "!= 0"
    error_if: str = "!= 0"
    limit: int | None = None
    fail_calc: str = "count(*)"

    @property
    def name(self) -> str:
        if self.label:
            return self.label
        if self.kind == "singular":
            return Path(self.file).stem
        return f"{self.kind}({self.model}.{self.column})"


@dataclass(frozen=True)
class Column:
    name: str
    description: str = ""
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Model:
    name: str  # schema.table
    schema: str
    table: str
    path: str  # relative to the project root
    canonical: str
    depends_on: tuple[str, ...]
    refs: tuple[TableRef, ...]
    materialized: str = "table"
    unique_key: tuple[str, ...] = ()
    description: str = ""
    tags: tuple[str, ...] = ()
    columns: tuple[Column, ...] = ()
    # Settings beyond materialization that change what its table holds (e.g. an incremental
    # strategy), as (key, value) pairs: they are part of its fingerprint. Plain models have none.
    config: tuple[tuple[str, str], ...] = ()
    # What the plan should say about how it is built (e.g. a dbt incremental model built in full).
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Seed:
    name: str
    schema: str
    table: str
    path: str
    content_hash: str
    columns: tuple[str, ...]
    column_types: tuple[tuple[str, str], ...] = ()  # (column, SQL type) the seed's loader casts to


@dataclass(frozen=True)
class Source:
    name: str
    schema: str
    table: str
    columns: tuple[str, ...] | None  # None: not declared, so unknown until the warehouse is asked
    file: str
    database: str | None = None  # declared: SQL may also name it database.schema.table


@dataclass(frozen=True)
class Exposure:
    """Something outside the project that reads it: a dashboard, a reverse-ETL sync, an ML feature."""

    name: str
    type: str
    depends_on: tuple[str, ...]
    owner: str = ""
    url: str = ""
    description: str = ""
    file: str = ""
    line: int | None = None


EXPOSURE_TYPES = ("dashboard", "notebook", "analysis", "ml", "application", "reverse_etl")


@dataclass(frozen=True)
class Project:
    root: Path
    config: ProjectConfig
    models: dict[str, Model]
    seeds: dict[str, Seed]
    sources: dict[str, Source]
    tests: tuple[DataTest, ...]
    dag: DAG = field(repr=False)
    names: Names = field(repr=False)
    exposures: tuple[Exposure, ...] = ()
    # A dbt project: its models' SQL is what dbt compiled (the files are Jinja templates).
    compiled: bool = False
    # The SQL allowlist its SQL passed (the server policy's additions included): SQL typed in a
    # comment about it (`/diff --where`) is held to the same one.
    allowlist: Allowlist | None = field(default=None, repr=False, compare=False)

    def node(self, name: str) -> Model | Seed:
        return self.models.get(name) or self.seeds[name]

    def resolve(self, parts: tuple[str, ...]) -> str | None:
        """The model, seed or source a table reference names, or None."""
        return resolve_name(parts, self.names)


@dataclass(frozen=True)
class Names:
    full: dict[str, str]  # "schema.table" -> kind
    short: dict[str, list[str]]  # "table" -> ["schema.table", ...]
    qualified: dict[str, str] = field(default_factory=dict)  # "database.schema.table" -> source

    @functools.cached_property
    def fingerprint(self) -> str:
        """Changes whenever a reference could resolve differently (a cached verdict is keyed by it)."""
        return hashlib.sha256(json.dumps([sorted(self.full.items()), sorted(self.qualified.items())])
                              .encode()).hexdigest()

    @classmethod
    def of(cls, models: dict[str, Any], seeds: dict[str, Any], sources: dict[str, Any]) -> Names:
        full: dict[str, str] = {}
        short: dict[str, list[str]] = {}
        for kind, names in (("model", models), ("seed", seeds), ("source", sources)):
            for name in names:
                full[name] = kind
                short.setdefault(name.split(".", 1)[1], []).append(name)
        qualified = {f"{s.database}.{name}": name for name, s in sources.items()
                     if getattr(s, "database", None)}
        return cls(full, short, qualified)


def resolve_name(parts: tuple[str, ...], names: Names) -> str | None:
    if len(parts) == 3:
        return names.qualified.get(".".join(parts))
    if len(parts) == 2:
        name = ".".join(parts)
        return name if name in names.full else None
    if len(parts) == 1:
        candidates = names.short.get(parts[0], [])
        return candidates[0] if len(candidates) == 1 else None
    return None

