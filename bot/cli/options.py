"""What the `sluice` commands share: the consoles, the workspace a command works on (project, state
store, warehouse: a laptop's, or with `--server-config` the bot's own for one repository), the
common options, and showing a user's error as one line."""

from __future__ import annotations

import getpass
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from policies.errors import PolicyError
from policies.policy import server_sql_allowlist
from runner.engines import Engine, open_engine
from runner.errors import SluiceError
from runner.project.dbt import DbtOptions, dbt_config, is_dbt_project
from runner.project.loader import load_project
from runner.project.nodes import Project
from runner.settings import Settings, local_settings
from runner.state.store import StateStore

F = TypeVar("F", bound=Callable[..., Any])
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


@dataclass(frozen=True)
class Place:
    """Where a command works, from the common options: the project's folder, and either a
    laptop's state and warehouse (URLs, or the defaults under .sluice/) or the bot's, read from
    its server configuration for one of its repositories."""

    project_dir: Path
    state_url: str | None = None
    warehouse_url: str | None = None
    server_config: Path | None = None
    repository: str | None = None  # "forge:group/name", with server_config


@dataclass
class Workspace:
    """What a command works on: the project, the state store and the warehouse."""

    root: Path
    settings: Settings
    _state: StateStore | None = None
    _records: StateStore | None = None
    _engine: Engine | None = None
    _project: Project | None = None
    _held: ExitStack = field(default_factory=ExitStack)

    @property
    def project(self) -> Project:
        if self._project is None:
            self._project = load_project(self.root, cache_dir=self.settings.cache_dir,
                                         sql_allowlist=self.settings.sql_allowlist, dbt=self._dbt())
        return self._project

    def _dbt(self) -> DbtOptions | None:
        """A dbt project on a laptop compiles with the laptop's own warehouse for introspection."""
        if not is_dbt_project(self.root):
            return None
        name = dbt_config(self.root).warehouse if (self.root / "sluice.yml").is_file() \
            else self.settings.default_warehouse
        try:
            return DbtOptions(warehouse_url=self.settings.warehouse_url(name))
        except SluiceError:
            return None

    @property
    def state(self) -> StateStore:
        """Environments and snapshots (the repository's namespace, in the bot's store)."""
        if self._state is None:
            self._state = StateStore(self.settings.state_url, namespace=self.settings.state_namespace,
                                     layout=self.settings.layout)
        return self._state

    @property
    def records(self) -> StateStore:
        """Where the audit log and locks live: the store itself (the bot's main one, not a
        repository's namespace)."""
        if self.settings.state_namespace is None:
            return self.state
        if self._records is None:
            self._records = StateStore(self.settings.state_url)
        return self._records

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            name = (self.project.config.warehouse if (self.root / "sluice.yml").is_file()
                    else self.settings.default_warehouse)
            url = self.settings.warehouse_url(name)
            if self.settings.state_namespace is not None:
                self._writer_turn(url)  # the bot's workers write there too
            self._engine = open_engine(url)
        return self._engine

    def _writer_turn(self, url: str) -> None:
        from bot.worker.keys import warehouse_lock
        from runner.engines import engine_class
        from runner.state.locks import Locks

        if not engine_class(url).single_writer:
            return
        who = f"cli:{actor()}:{os.getpid()}"
        lock = self._held.enter_context(Locks(self.records).hold(
            warehouse_lock(url), who, ttl=600, reason=f"`sluice` run by {actor()}", timeout=600,
            release="it is released when that command ends",
            on_held=lambda held: errors.print(f"waiting for the warehouse: held by {escape(held.reason)}")))
        if lock is None:
            raise SluiceError("the warehouse is busy (a worker is writing it); try again later")

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        self._held.close()
        for store in (self._state, self._records):
            if store is not None:
                store.close()


def handle_errors(func: F) -> F:
    """Show a user's error as one message and exit 2; never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SluiceError as exc:
            errors.print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)  # one line
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


PLACE_OPTIONS = ("project_dir", "state_url", "warehouse_url", "server_config", "repository")


def project_options(func: F) -> F:
    """The options saying where a command works; the command receives them as `place`."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        kwargs["place"] = Place(**{name: kwargs.pop(name) for name in PLACE_OPTIONS})
        return func(*args, **kwargs)

    command: Any = wrapper
    command = click.option("--repository", default=None, metavar="FORGE:NAME",
                           help="With --server-config: the repository (e.g. gitlab:data/shop); "
                                "default: the only one configured.")(command)
    command = click.option("--server-config", type=click.Path(dir_okay=False, path_type=Path),
                           default=None,
                           help="Work on the bot's state store and warehouse for one repository "
                                "(an operator's view of what the bot built).")(command)
    command = click.option("--warehouse-url", envvar="SLUICE_WAREHOUSE_URL", default=None,
                           help="Warehouse URL (default: duckdb file under PROJECT/.sluice/).")(command)
    command = click.option("--state-url", envvar="SLUICE_STATE_URL", default=None,
                           help="State store URL, SQLite or PostgreSQL (default: "
                                "PROJECT/.sluice/state.db).")(command)
    command = click.option("--project", "-p", "project_dir", default=".", show_default=True,
                           type=click.Path(file_okay=False, path_type=Path),
                           help="The data project's folder (holds sluice.yml).")(command)
    return command


@contextmanager
def workspace(place: Place) -> Iterator[Workspace]:
    if place.server_config is not None:
        settings = server_settings(place.server_config, place.repository)
    else:
        settings = local_settings(place.project_dir, os.environ, place.state_url, place.warehouse_url)
    ws = Workspace(place.project_dir, settings)
    try:
        yield ws
    finally:
        ws.close()


def server_settings(config_path: Path, repository: str | None) -> Settings:
    """The bot's state store (the repository's namespace in it) and the warehouse connections the
    server lets that repository use."""
    from bot.cli.server import configured_repository, server_config
    from bot.worker.context import layout
    from bot.worker.keys import namespace

    config = server_config(config_path)
    repo, entry = configured_repository(config, repository)
    return Settings(state_url=config.state_url,
                    warehouses={name: config.warehouses[name] for name in entry.warehouses},
                    cache_dir=config.work_dir / "cache", state_namespace=namespace(repo),
                    default_warehouse=entry.warehouses[0], layout=layout(config, repo),
                    sql_allowlist=_server_sql_allowlist(config.policy_file))


def _server_sql_allowlist(policy_file: Path | None) -> tuple[str, ...]:
    try:
        return server_sql_allowlist(policy_file)
    except PolicyError as exc:
        raise SluiceError(str(exc)) from None


def default_environment(root: Path) -> str:
    """A dev environment named after the current git branch (`dev` outside a git repository)."""
    try:
        import git

        repo = git.Repo(root, search_parent_directories=True)
        branch = repo.active_branch.name
    except Exception:  # not a repository, detached HEAD, no git: fall back
        return "dev"
    name = "".join(c if c.isalnum() else "_" for c in branch.lower()).strip("_")
    while "__" in name:
        name = name.replace("__", "_")
    name = name if name and name[0].isalpha() else f"b_{name}"
    return name[:40].rstrip("_") or "dev"



def actor() -> str:
    """Who runs the command, for the audit log."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))
