"""Warehouse engines: one small interface (`base.Engine`) and one module per warehouse, found here
by the scheme of a warehouse URL.

This registry is the one place that knows which warehouses exist. The engine modules are imported
only when a URL asks for them (a DuckDB laptop never pays for psycopg's import).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from urllib.parse import urlsplit

from runner.engines.base import Engine
from runner.engines.sandbox import TRUSTED, Sandbox
from runner.errors import SluiceError


@dataclass(frozen=True)
class EngineEntry:
    module: str
    cls: str
    schemes: tuple[str, ...]  # URL schemes that open it
    dialect: str  # the sqlglot dialect a project writes for it (its class's `dialect`)


ENGINES: tuple[EngineEntry, ...] = (
    EngineEntry("runner.engines.duckdb", "DuckDBEngine", ("duckdb",), "duckdb"),
    EngineEntry("runner.engines.postgres", "PostgresEngine",
                ("postgresql", "postgresql+psycopg", "postgres"), "postgres"),
)
DEFAULT_DIALECT = ENGINES[0].dialect  # the embedded default warehouse's
SCHEMES = tuple(scheme for entry in ENGINES for scheme in entry.schemes)
DIALECTS = tuple(sorted({entry.dialect for entry in ENGINES}))


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower()


def entry_for(url: str) -> EngineEntry:
    scheme = scheme_of(url)
    for entry in ENGINES:
        if scheme in entry.schemes:
            return entry
    raise SluiceError(f"unsupported warehouse URL scheme {scheme!r}; supported: {', '.join(SCHEMES)}")


def engine_class(url: str) -> type[Engine]:
    """The engine class a URL opens, for its capability flags, without connecting."""
    entry = entry_for(url)
    engine: type[Engine] = getattr(importlib.import_module(entry.module), entry.cls)
    return engine


def engine_class_for(dialect: str) -> type[Engine]:
    """The engine class of a project's dialect (a dbt profile is made for it before any URL)."""
    for entry in ENGINES:
        if entry.dialect == dialect:
            engine: type[Engine] = getattr(importlib.import_module(entry.module), entry.cls)
            return engine
    raise SluiceError(f"no warehouse speaks the dialect {dialect!r}; supported: {', '.join(DIALECTS)}")


def open_engine(url: str, sandbox: Sandbox = TRUSTED) -> Engine:
    """Open a warehouse from a URL: `duckdb:///path/to/file.duckdb` (or `duckdb://` in memory), or
    `postgresql://user@host:5432/db` (also `postgresql+psycopg://`; see `PostgresEngine`).
    `sandbox`: how the engine holds project SQL (`UNTRUSTED` for merge-request code)."""
    engine = engine_class(url).from_url(url, sandbox)
    engine.location = location_of(url)
    return engine


def location_of(url: str) -> str:
    """Which warehouse a URL reaches, without its credentials or settings: two connections to
    one database (another user, other options) are one location."""
    entry = entry_for(url)
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{entry.dialect}://{host}{port}{parts.path}"


__all__ = ["DEFAULT_DIALECT", "DIALECTS", "ENGINES", "SCHEMES", "Engine", "engine_class", "engine_class_for",
           "open_engine"]
