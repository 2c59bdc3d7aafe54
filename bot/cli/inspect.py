"""`sluice diff`, `lineage` and `audit`: reading what changed, where data flows, and who did what."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from bot.cli.options import Place, console, handle_errors, project_options, when, workspace
from bot.cli.server import server_config
from bot.records.audit import AuditLog
from runner.naming import check_environment_name
from runner.project.loader import load_project
from runner.settings import local_settings
from runner.state.store import StateStore


@click.command()
@click.argument("first")
@click.argument("second")
@click.argument("model", required=False)
@project_options
@click.option("--columns", default=None, help="Compare only these columns (comma separated).")
@click.option("--where", default=None,
              help="A SQL condition over the model's columns; both sides are filtered by it.")
@click.option("--limit", type=click.IntRange(0, 1000), default=None, help="Sample rows to show.")
@click.option("--key", default=None,
              help="Match rows by these columns (comma separated) instead of the model's unique key.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True)
@handle_errors
def diff(first: str, second: str, model: str | None, place: Place, columns: str | None,
         where: str | None, limit: int | None, key: str | None, fmt: str) -> None:
    """Data diff, in the warehouse, of the models whose snapshots differ between environments
    FIRST and SECOND (e.g. `sluice diff prod mr_42`), or of one MODEL."""
    from bot.report.markdown import render_data_diff
    from runner.lineage.project import resolve_target
    from runner.review.compare import compare

    with workspace(place) as ws:
        name = resolve_target(ws.project, model)[0] if model else None
        wanted = [c.strip().lower() for c in columns.split(",")] if columns else None
        keys = [c.strip().lower() for c in key.split(",") if c.strip()] if key else None
        found = compare(ws.project, ws.state, ws.engine, check_environment_name(first),
                        check_environment_name(second), name, columns=wanted, where=where, samples=limit,
                        key=keys)
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


@click.command()
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



@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Read the server's audit log (its state_url); without it, the project's.")
@project_options
@click.option("--env", "environment", default=None, help="Only entries about this environment.")
@click.option("--action", default=None,
              help="Only this action: promote, rollback, deploy, approve, override, unlock, "
                   "lock_expired, bootstrap, promotion_refused.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@handle_errors
def audit(config_path: Path | None, place: Place, environment: str | None, action: str | None, limit: int,
          fmt: str) -> None:
    """Who promoted, rolled back, approved, overrode, unlocked or let lapse what, and when."""
    config_path = config_path or place.server_config
    url = server_config(config_path).state_url if config_path else (
        place.state_url or local_settings(place.project_dir, os.environ).state_url)
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
        table.add_row(when(e.at), e.actor, e.action, e.environment or "", where, (e.sha or "")[:8],
                      escape(detail[:120]))
    console.print(table)


