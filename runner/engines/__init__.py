"""Warehouse engines: one small interface (`base.Engine`) and one module per warehouse."""

from __future__ import annotations

from runner.engines.base import Engine
from runner.errors import SluiceError


def open_engine(url: str) -> Engine:
    """Open a warehouse from a URL: `duckdb:///path/to/file.duckdb` (or `duckdb://:memory:`), or
    `postgresql://user@host:5432/db` (also `postgresql+psycopg://`; see `PostgresEngine`)."""
    scheme = url.split("://", 1)[0]
    if scheme == "duckdb":
        from runner.engines.duckdb import DuckDBEngine

        return DuckDBEngine.from_url(url)
    if scheme in ("postgresql", "postgresql+psycopg", "postgres"):
        from runner.engines.postgres import PostgresEngine

        return PostgresEngine.from_url(url)
    raise SluiceError(f"unsupported warehouse URL scheme {scheme!r}; supported: duckdb, postgresql")


__all__ = ["Engine", "open_engine"]
