"""The dbt profile Sluice writes for a compile: one `prod` target, never the repository's own
profiles.yml (which may name credentials or a warehouse the server does not allow)."""

from __future__ import annotations

import json
from urllib.parse import unquote, urlsplit

from runner.errors import ProjectError

ADAPTERS = {"duckdb": "duckdb", "postgres": "postgres"}
NO_CONNECTION = "sluice_no_introspection"  # the role of a profile that must never connect


def profile_yaml(profile: str, dialect: str, schema: str, warehouse_url: str | None) -> str:
    """profiles.yml text (JSON is YAML) for `profile`'s `prod` target.

    DuckDB compiles against an in-memory database: compiling reads nothing and writes nothing.
    PostgreSQL gets the restricted read-only connection when one is given (for `run_query`),
    else a connection that is never opened unless a macro asks for one.
    """
    adapter = ADAPTERS.get(dialect)
    if adapter is None:
        raise ProjectError(f"dbt projects are supported on {', '.join(ADAPTERS)}; the project's "
                           f"dialect is {dialect!r}", file="sluice.yml")
    target: dict[str, object] = {"type": adapter, "schema": schema, "threads": 1}
    if adapter == "duckdb":
        target["path"] = ":memory:"
        target["database"] = "memory"
    else:
        url = urlsplit(warehouse_url or f"postgresql://{NO_CONNECTION}@127.0.0.1:5432/postgres")
        target.update({"host": url.hostname or "127.0.0.1", "port": url.port or 5432,
                       "user": unquote(url.username or NO_CONNECTION),
                       "password": unquote(url.password or ""),
                       "dbname": (url.path or "/postgres").lstrip("/") or "postgres",
                       "connect_timeout": 5})
    return json.dumps({profile: {"target": "prod", "outputs": {"prod": target}}}, indent=1)
