"""Where Sluice keeps its state and which warehouses a project may use: one typed object, loaded
once at the edge (command line or server start) and passed down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import SluiceError
from runner.naming import Layout

LOCAL_DIR = ".sluice"


@dataclass(frozen=True)
class Settings:
    state_url: str
    # connection name -> URL; "*" answers for any name (a laptop has one warehouse)
    warehouses: Mapping[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    state_namespace: str | None = None  # a repository's namespace in a shared (the bot's) store
    default_warehouse: str = "default"  # the connection used when there is no sluice.yml to name one
    sql_allowlist: tuple[str, ...] = ()  # functions the server's policy file adds to the allowlist
    layout: Layout = field(default_factory=Layout)  # where the repository's objects live in the warehouse

    def warehouse_url(self, name: str) -> str:
        url = self.warehouses.get(name) or self.warehouses.get("*")
        if url is None:
            known = ", ".join(sorted(self.warehouses)) or "none"
            raise SluiceError(
                f"the project asks for warehouse connection {name!r}, which this server does not "
                f"define (defined: {known})")
        return url


def local_settings(root: Path, environ: Mapping[str, str] | None = None,
                   state_url: str | None = None, warehouse_url: str | None = None) -> Settings:
    """Settings for a laptop: a SQLite state file and a DuckDB warehouse under `<root>/.sluice/`,
    unless URLs are given (options or SLUICE_STATE_URL / SLUICE_WAREHOUSE_URL); the parse cache in
    the user's cache folder (never in the project, where a commit could bring one)."""
    environ = environ or {}
    local = root.resolve() / LOCAL_DIR
    state = state_url or environ.get("SLUICE_STATE_URL") or f"sqlite:///{local / 'state.db'}"
    warehouse = (warehouse_url or environ.get("SLUICE_WAREHOUSE_URL")
                 or f"duckdb:///{local / 'warehouse.duckdb'}")
    return Settings(state_url=state, warehouses={"*": warehouse}, cache_dir=user_cache_dir(environ))


def user_cache_dir(environ: Mapping[str, str]) -> Path:
    """`$XDG_CACHE_HOME/sluice`, else `~/.cache/sluice`."""
    base = environ.get("XDG_CACHE_HOME")
    return (Path(base) if base and Path(base).is_absolute() else Path.home() / ".cache") / "sluice"
