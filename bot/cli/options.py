"""What the `sluice` commands share: the consoles, the workspace a command works on (project, state
store, warehouse), the common options, and showing a user's error as one line."""

from __future__ import annotations

import getpass
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from runner.engines import Engine, open_engine
from runner.errors import SluiceError
from runner.project.loader import load_project
from runner.project.nodes import Project
from runner.settings import Settings, local_settings
from runner.state.store import StateStore

F = TypeVar("F", bound=Callable[..., Any])
console = Console(highlight=False)
errors = Console(stderr=True, highlight=False)


@dataclass
class Workspace:
    """What a command works on: the project, the state store and the warehouse."""

    root: Path
    settings: Settings
    _state: StateStore | None = None
    _engine: Engine | None = None
    _project: Project | None = None

    @property
    def project(self) -> Project:
        if self._project is None:
            self._project = load_project(self.root, cache_dir=self.settings.cache_dir)
        return self._project

    @property
    def state(self) -> StateStore:
        if self._state is None:
            self._state = StateStore(self.settings.state_url)
        return self._state

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            name = self.project.config.warehouse if (self.root / "sluice.yml").is_file() else "default"
            self._engine = open_engine(self.settings.warehouse_url(name))
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        if self._state is not None:
            self._state.close()


def handle_errors(func: F) -> F:
    """Show a user's error as one message and exit 2; never a traceback."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SluiceError as exc:
            errors.print(f"[bold red]error:[/] {escape(str(exc))}")
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def project_options(func: F) -> F:
    func = click.option("--warehouse-url", envvar="SLUICE_WAREHOUSE_URL", default=None,
                        help="Warehouse URL (default: duckdb file under PROJECT/.sluice/).")(func)
    func = click.option("--state-url", envvar="SLUICE_STATE_URL", default=None,
                        help="State store URL, SQLite or PostgreSQL (default: PROJECT/.sluice/state.db).",
                        )(func)
    func = click.option("--project", "-p", "project_dir", default=".", show_default=True,
                        type=click.Path(file_okay=False, path_type=Path),
                        help="The data project's folder (holds sluice.yml).")(func)
    return func


@contextmanager
def workspace(project_dir: Path, state_url: str | None, warehouse_url: str | None) -> Iterator[Workspace]:
    ws = Workspace(project_dir, local_settings(project_dir, os.environ, state_url, warehouse_url))
    try:
        yield ws
    finally:
        ws.close()


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
