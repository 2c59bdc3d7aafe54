"""The `sluice` command line: plan, promote, roll back, inspect and clean environments.

It runs exactly the runner steps the bot's worker runs for a merge request. Errors a user can
cause are shown as one message naming the file, line or command; never as a traceback.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bot.cli import console as out
from bot.report.markdown import render_markdown
from runner import environments
from runner.datatests import run_tests, select_tests
from runner.engines import Engine, open_engine
from runner.errors import SluiceError
from runner.janitor import parse_duration, run_janitor
from runner.naming import check_environment_name
from runner.pipeline import RunResult, execute, plan_environment
from runner.project.loader import load_project
from runner.project.nodes import Project
from runner.review.summary import review
from runner.settings import Settings, local_settings

if TYPE_CHECKING:
    from bot.config import ServerConfig
from bot.records.audit import AuditLog
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


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="sluice")
def main() -> None:
    """Sluice: plan, build, test and promote SQL models in zero-copy environments.

    Start with `sluice init` for a new project, or `sluice demo` to watch the whole flow on a
    sample shop project.
    """
    for stream in (console, errors):
        if not stream.is_terminal:
            stream.width = 160  # logs and pipes: keep table rows on one line


@main.command()
@click.argument("directory", default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", default=None, help="Project name (default: the folder's name).")
@handle_errors
def init(directory: Path, name: str | None) -> None:
    """Start a project in DIRECTORY: a commented sluice.yml and an example model."""
    from bot.cli.scaffold import write_scaffold

    written = write_scaffold(directory, name)
    for path in written:
        console.print(f"[green]wrote[/] {path}")
    console.print(f"Next: [bold]sluice plan prod --project {directory}[/]")


@main.command()
@click.argument("env", required=False)
@project_options
@click.option("--dry-run", is_flag=True, help="Print the plan; build and change nothing.")
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="Models built at the same time (default: build.threads in sluice.yml).")
@click.option("--all-tests", is_flag=True, help="Run every test, not only those on changed models.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown"]), default="text",
              show_default=True, help="markdown prints the report the bot would post.")
@click.option("--verbose", "-v", is_flag=True, help="List unchanged models too.")
@handle_errors
def plan(env: str | None, project_dir: Path, state_url: str | None, warehouse_url: str | None,
         dry_run: bool, threads: int | None, all_tests: bool, fmt: str, verbose: bool) -> None:
    """Plan the project against ENV, build what is missing, test, and point ENV's views.

    ENV defaults to a dev environment named after the current git branch; `prod` is production.
    Exits 1 when a build or a test fails.
    """
    with workspace(project_dir, state_url, warehouse_url) as ws:
        target = check_environment_name(env or default_environment(project_dir))
        result = run_with_output(ws, target, dry_run=dry_run, threads=threads, all_tests=all_tests,
                                 text=fmt == "text", verbose=verbose)
        if fmt == "markdown":
            from policies import PolicyError, evaluate, load_policy
            from runner.policyfacts import project_facts

            the_review = review(result.plan, ws.project, ws.state, None if dry_run else ws.engine)
            try:  # on a laptop: the defaults plus the project's own `policies:` section
                rules = evaluate(load_policy(ws.project.config.policies), project_facts(ws.project))
            except PolicyError as exc:
                raise SluiceError(str(exc)) from None
            console.print(render_markdown(result, review=the_review, policy=rules), markup=False,
                          soft_wrap=True)
        if not result.ok or result.held_back:
            sys.exit(1)


def run_with_output(ws: Workspace, target: str, *, dry_run: bool = False, threads: int | None = None,
                    all_tests: bool = False, text: bool = True, verbose: bool = False) -> RunResult:
    """The pipeline with the plan, progress and results printed as it goes (when `text`)."""
    clock = time.perf_counter()
    the_plan = plan_environment(ws.project, ws.state, target)
    seconds = time.perf_counter() - clock
    if text:
        out.print_plan(console, the_plan, verbose)
    total = 0 if dry_run or not text else len(the_plan.to_build)
    with out.build_progress(console, total, quiet=not text) as progress:
        result = execute(the_plan, ws.project, ws.state, ws.engine, dry_run=dry_run, threads=threads,
                         all_tests=all_tests, progress=progress, plan_seconds=seconds,
                         on_test=(lambda r: out.print_test(console, r)) if text else None)
    if text and not dry_run:
        out.print_summary(console, result)
    return result


@main.command()
@click.argument("source")
@click.argument("target")
@project_options
@handle_errors
def promote(source: str, target: str, project_dir: Path, state_url: str | None,
            warehouse_url: str | None) -> None:
    """Point TARGET at SOURCE's snapshots in one transaction; nothing is rebuilt.

    Example: `sluice promote mr_42 prod`.
    """
    with workspace(project_dir, state_url, warehouse_url) as ws:
        clock = time.perf_counter()
        before = ws.state.environment(target)
        result = environments.promote(ws.engine, ws.state, check_environment_name(source),
                                      check_environment_name(target))
        AuditLog(ws.state).record(_actor(), "promote", environment=target, source=source,
                                  before=dict(before.models) if before else {}, moved=len(result.changed))
        console.print(f"[green]promoted[/] {source} -> {target}: {len(result.changed)} views moved, "
                      f"{len(result.dropped)} dropped, {result.unchanged} already there, 0 rebuilt "
                      f"({time.perf_counter() - clock:.2f}s)")


@main.command()
@click.argument("env")
@project_options
@handle_errors
def rollback(env: str, project_dir: Path, state_url: str | None, warehouse_url: str | None) -> None:
    """Point ENV back at the snapshots it had before its last promotion (or plan)."""
    with workspace(project_dir, state_url, warehouse_url) as ws:
        before = ws.state.environment(env)
        result = environments.rollback(ws.engine, ws.state, check_environment_name(env))
        AuditLog(ws.state).record(_actor(), "rollback", environment=env,
                                  before=dict(before.models) if before else {}, moved=len(result.changed))
        console.print(f"[green]rolled back[/] {env}: {len(result.changed)} views moved back, "
                      f"{len(result.dropped)} dropped")


@main.group()
def env() -> None:
    """List, inspect and drop environments."""


@env.command("list")
@project_options
@handle_errors
def env_list(project_dir: Path, state_url: str | None, warehouse_url: str | None) -> None:
    """List environments with their size and last change."""
    with workspace(project_dir, state_url, warehouse_url) as ws:
        table = Table("environment", "models", "updated", "expires")
        for record in ws.state.environments():
            expires = _when(record.expires_at) if record.expires_at else ""
            table.add_row(record.name, str(len(record.models)), _when(record.updated_at), expires)
        console.print(table)


@env.command("show")
@click.argument("name")
@project_options
@handle_errors
def env_show(name: str, project_dir: Path, state_url: str | None, warehouse_url: str | None) -> None:
    """Show which snapshot each model of NAME points at."""
    with workspace(project_dir, state_url, warehouse_url) as ws:
        table = Table("model", "physical object", "fingerprint", "built", title=name, title_justify="left")
        for model, snapshot in environments.describe(ws.state, check_environment_name(name)):
            note = f" (kept from {snapshot.reused_from[:10]})" if snapshot.reused_from else ""
            table.add_row(model, snapshot.physical + note, snapshot.fingerprint[:10],
                          _when(snapshot.created_at))
        console.print(table)
        for entry in ws.state.history(name)[:5]:
            source = f" from {entry.source}" if entry.source else ""
            rolled = " (rolled back)" if entry.rolled_back else ""
            console.print(f"  #{entry.id} {_when(entry.created_at)} {entry.action}{source}{rolled}")


@env.command("drop")
@click.argument("name")
@project_options
@handle_errors
def env_drop(name: str, project_dir: Path, state_url: str | None, warehouse_url: str | None) -> None:
    """Drop NAME's views and schemas (physical tables stay until the janitor's TTL)."""
    with workspace(project_dir, state_url, warehouse_url) as ws:
        result = environments.drop(ws.engine, ws.state, check_environment_name(name))
        console.print(f"[green]dropped[/] {name}: {len(result.dropped)} views")


@main.command()
@click.argument("env")
@project_options
@click.option("--changed-only", is_flag=True, help="Only tests on models whose data the last plan changed.")
@handle_errors
def test(env: str, project_dir: Path, state_url: str | None, warehouse_url: str | None,
         changed_only: bool) -> None:
    """Run the project's data tests against ENV's current snapshots. Exits 1 on a failure."""
    with workspace(project_dir, state_url, warehouse_url) as ws:
        rows = environments.describe(ws.state, check_environment_name(env))
        physical = {name: (s.physical_schema, s.physical_table) for name, s in rows}
        changed = None
        if changed_only:
            history = ws.state.history(env)
            changed = set(history[0].after) - set(history[0].before) if history else set()
        tests = [t for t in select_tests(ws.project, changed)
                 if all(d in physical or d in ws.project.sources for d in (t.model, *t.depends_on) if d)]
        result = run_tests(tests, ws.project, ws.engine, physical, lambda r: out.print_test(console, r))
        colour = "green" if result.ok else "red"
        console.print(f"[{colour}]{len(result.passed)} passed, {len(result.failed)} failed[/]")
        if not result.ok:
            sys.exit(1)


@main.command()
@project_options
@click.option("--ttl", default="7d", show_default=True,
              help="Drop physical objects unreferenced for longer than this (e.g. 12h, 7d, 2w).")
@click.option("--dry-run", is_flag=True, help="Say what would be dropped; drop nothing.")
@handle_errors
def janitor(project_dir: Path, state_url: str | None, warehouse_url: str | None, ttl: str,
            dry_run: bool) -> None:
    """Drop expired environments and physical objects no environment has used for TTL."""
    with workspace(project_dir, state_url, warehouse_url) as ws:
        report = run_janitor(ws.engine, ws.state, parse_duration(ttl), dry_run=dry_run)
        verb = "would drop" if dry_run else "dropped"
        console.print(f"{verb} {len(report.environments)} environments, {len(report.objects)} physical "
                      f"objects; kept {len(report.kept_for_views)} that kept views still read")
        for name in report.environments:
            console.print(f"  environment {name}")
        for name in report.objects:
            console.print(f"  {name}")


@main.command()
@click.option("--dir", "directory", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where to create the sample repository (default: a new temporary folder).")
@handle_errors
def demo(directory: Path | None) -> None:
    """Run the whole merge-request flow on a sample shop project, in seconds."""
    from bot.demo import run_demo

    ok = run_demo(console, directory)
    if not ok:
        sys.exit(1)


@main.command()
@click.argument("first")
@click.argument("second")
@click.argument("model", required=False)
@project_options
@click.option("--columns", default=None, help="Compare only these columns (comma separated).")
@click.option("--where", default=None,
              help="A SQL condition over the model's columns; both sides are filtered by it.")
@click.option("--limit", type=click.IntRange(0, 1000), default=None, help="Sample rows to show.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True)
@handle_errors
def diff(first: str, second: str, model: str | None, project_dir: Path, state_url: str | None,
         warehouse_url: str | None, columns: str | None, where: str | None, limit: int | None,
         fmt: str) -> None:
    """Data diff, in the warehouse, of the models whose snapshots differ between environments
    FIRST and SECOND (e.g. `sluice diff prod mr_42`), or of one MODEL."""
    from bot.report.markdown import render_data_diff
    from runner.lineage.project import resolve_target
    from runner.review.compare import compare

    with workspace(project_dir, state_url, warehouse_url) as ws:
        name = resolve_target(ws.project, model)[0] if model else None
        wanted = [c.strip().lower() for c in columns.split(",")] if columns else None
        found = compare(ws.project, ws.state, ws.engine, check_environment_name(first),
                        check_environment_name(second), name, columns=wanted, where=where, samples=limit)
        if fmt == "json":
            console.print_json(json.dumps([dataclasses.asdict(c) for c in found], default=str))
            return
        if not found:
            console.print(f"{first} and {second} point at the same snapshots: no differences.")
            return
        for item in found:
            if item.diff is None:
                where_text = (f"only in {first}" if item.after is None else f"only in {second}"
                              if item.before is None else "same data (both read one physical table)")
                console.print(f"[bold]{item.name}[/]: {where_text}")
                continue
            if fmt == "markdown":
                console.print(render_data_diff(item.name, item.diff, item.pii, where), markup=False,
                              soft_wrap=True)
                continue
            d = item.diff
            table = Table("rows before", "rows after", "added", "removed", "changed", "unchanged",
                          title=f"{item.name}  ({d.before} -> {d.after})", title_justify="left")
            table.add_row(*(f"{v:,}" for v in (d.rows_before, d.rows_after, d.added, d.removed,
                                               d.changed, d.unchanged)))
            console.print(table)
            changed = [c for c in d.columns if c.changed]
            if changed:
                columns_table = Table("column", "changed", "share")
                for c in changed:
                    columns_table.add_row(c.name, f"{c.changed:,}", f"{c.share:.1%}")
                console.print(columns_table)
            for note, flag in (("sampled: the row cap applied", d.sampled),
                               ("truncated: the time cap applied, counts are partial", d.truncated),
                               ("the key is not unique or has NULLs", d.duplicate_keys_before
                                or d.duplicate_keys_after or d.null_keys_before or d.null_keys_after)):
                if flag:
                    console.print(f"[yellow]{note}[/]")


@main.command()
@click.argument("target")
@click.option("--project", "-p", "project_dir", default=".", show_default=True,
              type=click.Path(file_okay=False, path_type=Path), help="The data project's folder.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True)
@handle_errors
def lineage(target: str, project_dir: Path, fmt: str) -> None:
    """Upstream and downstream lineage of TARGET: a model (schema.model) or a column
    (schema.model.column), traced through CTEs, joins, aggregates, windows, unions and `*`."""
    from bot.report.answers import describe_lineage
    from runner.lineage.project import resolve_target, trace

    project = load_project(project_dir, cache_dir=local_settings(project_dir).cache_dir)
    if fmt == "markdown":
        console.print(describe_lineage(project, target), markup=False, soft_wrap=True)
        return
    found = trace(project, *resolve_target(project, target))
    if fmt == "json":
        console.print_json(json.dumps(dataclasses.asdict(found)))
        return
    title = f"{found.model}.{found.column}" if found.column else found.model
    table = Table("direction", "model", "column" if found.column else "", title=f"Lineage of {title}",
                  title_justify="left")
    if found.column:
        for direction, refs in (("upstream", found.upstream), ("downstream", found.downstream)):
            for model, column in refs:
                table.add_row(direction, model, "(all columns)" if column == "*" else column)
    else:
        for direction, models in (("upstream", found.upstream_models),
                                  ("downstream", found.downstream_models)):
            for model in models:
                table.add_row(direction, model, "")
    console.print(table)


def _server_config(config_path: Path | None) -> ServerConfig:
    from bot.config import load_server_config

    return load_server_config(config_path)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="SLUICE_CONFIG", help="Server configuration file (YAML); see README.")
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="host:port to listen on.")
@click.option("--workers", default=2, show_default=True, help="gunicorn worker processes.")
@click.option("--threads", default=4, show_default=True, help="Threads per web worker.")
@click.option("--embedded", is_flag=True,
              help="Run the web app and a job worker in one process (single machine; the broker "
                   "is in-process unless SLUICE_BROKER_URL or broker_url is set).")
@click.option("--insecure", is_flag=True,
              help="Accept webhooks from a forge that has no secret configured (development only).")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="SLUICE_LOG_FORMAT", help="json: one object per line with run, MR and commit.")
@handle_errors
def serve(config_path: Path | None, bind: str, workers: int, threads: int, embedded: bool,
          insecure: bool, log_format: str) -> None:
    """Serve the webhook endpoints, health checks, metrics and run pages."""
    import dataclasses

    from bot.logs import configure_logging
    from bot.web.serve import serve_embedded, serve_gunicorn

    config = _server_config(config_path)
    configure_logging(config, log_format)
    from bot.web.serve import share_metrics

    share_metrics(config.work_dir)
    if insecure:
        config = dataclasses.replace(config, insecure=True)
    host, _, port = bind.rpartition(":")
    if embedded:
        if not os.environ.get("SLUICE_BROKER_URL") and not _broker_configured(config_path):
            config = dataclasses.replace(config, broker_url="stub://")
        serve_embedded(config, host or "127.0.0.1", int(port or 8000), threads)
    else:
        serve_gunicorn(config, bind, workers, threads)


def _broker_configured(config_path: Path | None) -> bool:
    if config_path is None:
        return False
    from runner.project.yamlfile import load_yaml

    return "broker_url" in load_yaml(config_path)


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
              envvar="SLUICE_CONFIG", help="Server configuration file (YAML); see README.")
@click.option("--threads", default=2, show_default=True, help="Jobs run at the same time.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
              envvar="SLUICE_LOG_FORMAT", help="json: one object per line with run, MR and commit.")
@handle_errors
def worker(config_path: Path | None, threads: int, log_format: str) -> None:
    """Run jobs from the broker (plans, builds, reports, promotions), the event sweeper and the
    janitor."""
    from bot.logs import configure_logging
    from bot.web.serve import share_metrics
    from bot.worker.process import WorkerProcess

    config = _server_config(config_path)
    configure_logging(config, log_format)
    share_metrics(config.work_dir)
    WorkerProcess(config, threads=threads).run_forever()


@main.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read the server's audit log (its state_url); without it, the project's.")
@project_options
@click.option("--env", "environment", default=None, help="Only entries about this environment.")
@click.option("--action", default=None,
              help="Only this action: promote, rollback, deploy, approve, override, unlock, "
                   "promotion_refused.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def audit(config_path: Path | None, project_dir: Path, state_url: str | None, warehouse_url: str | None,
          environment: str | None, action: str | None, limit: int, fmt: str) -> None:
    """Who promoted, rolled back, approved, overrode or unlocked what, and when."""
    url = _server_config(config_path).state_url if config_path else (
        state_url or local_settings(project_dir, os.environ).state_url)
    store = StateStore(url)
    try:
        entries = AuditLog(store).entries(environment=environment, action=action, limit=limit)
    finally:
        store.close()
    if fmt == "json":
        console.print_json(json.dumps([dataclasses.asdict(e) for e in entries]))
        return
    table = Table("when", "who", "action", "environment", "merge request", "commit", "detail")
    for e in entries:
        where = f"{e.repository}!{e.number}" if e.repository else ""
        detail = ", ".join(f"{k}={v}" for k, v in e.detail.items() if k not in ("before", "after"))
        table.add_row(_when(e.at), e.actor, e.action, e.environment or "", where, (e.sha or "")[:8],
                      escape(detail[:120]))
    console.print(table)


def _actor() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


if __name__ == "__main__":
    main()
