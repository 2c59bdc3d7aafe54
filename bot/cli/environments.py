"""`sluice promote`, `rollback`, `env list|show|drop` and `janitor`: moving, inspecting and cleaning
environments."""

from __future__ import annotations

import time

import click
from rich.table import Table

from bot.cli import jsonout
from bot.cli.options import Place, actor, console, handle_errors, project_options, when, workspace
from bot.records.audit import AuditLog
from runner import environments
from runner.janitor import parse_duration, run_janitor
from runner.naming import check_environment_name

FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                      show_default=True, help="json: for scripts (README: Scripting).")


@click.command()
@click.argument("source")
@click.argument("target")
@project_options
@FORMAT
@handle_errors
def promote(source: str, target: str, place: Place, fmt: str) -> None:
    """Point TARGET at SOURCE's snapshots in one transaction; nothing is rebuilt.

    Example: `sluice promote mr_42 prod`.
    """
    with workspace(place) as ws:
        clock = time.perf_counter()
        before = ws.state.environment(target)
        result = environments.promote(ws.engine, ws.state, check_environment_name(source),
                                      check_environment_name(target))
        AuditLog(ws.records).record(actor(), "promote", environment=target, source=source,
                                    before=dict(before.models) if before else {}, moved=len(result.changed))
        seconds = time.perf_counter() - clock
        if fmt == "json":
            console.print(jsonout.dumps({**(jsonout.repoint(result) or {}), "source": source,
                                         "rebuilt": 0, "seconds": round(seconds, 4)}),
                          markup=False, soft_wrap=True)
            return
        console.print(f"[green]promoted[/] {source} -> {target}: {len(result.changed)} views moved, "
                      f"{len(result.dropped)} dropped, {result.unchanged} already there, 0 rebuilt "
                      f"({seconds:.2f}s)")


@click.command()
@click.argument("env")
@project_options
@FORMAT
@handle_errors
def rollback(env: str, place: Place, fmt: str) -> None:
    """Point ENV back at the snapshots it had before its last promotion (or plan)."""
    with workspace(place) as ws:
        clock = time.perf_counter()
        before = ws.state.environment(env)
        result = environments.rollback(ws.engine, ws.state, check_environment_name(env))
        AuditLog(ws.records).record(actor(), "rollback", environment=env,
                                    before=dict(before.models) if before else {}, moved=len(result.changed))
        if fmt == "json":
            console.print(jsonout.dumps({**(jsonout.repoint(result) or {}), "rebuilt": 0,
                                         "seconds": round(time.perf_counter() - clock, 4)}),
                          markup=False, soft_wrap=True)
            return
        console.print(f"[green]rolled back[/] {env}: {len(result.changed)} views moved back, "
                      f"{len(result.dropped)} dropped")


@click.group()
def env() -> None:
    """List, inspect and drop environments."""


@env.command("list")
@project_options
@FORMAT
@handle_errors
def env_list(place: Place, fmt: str) -> None:
    """List environments with their size and last change."""
    with workspace(place) as ws:
        if fmt == "json":
            console.print(jsonout.dumps([jsonout.environment(r) for r in ws.state.environments()]),
                          markup=False, soft_wrap=True)
            return
        table = Table("environment", "models", "updated", "expires")
        for record in ws.state.environments():
            expires = when(record.expires_at) if record.expires_at else ""
            table.add_row(record.name, str(len(record.models)), when(record.updated_at), expires)
        console.print(table)


@env.command("show")
@click.argument("name")
@project_options
@FORMAT
@handle_errors
def env_show(name: str, place: Place, fmt: str) -> None:
    """Show which snapshot each model of NAME points at."""
    with workspace(place) as ws:
        rows = environments.describe(ws.state, check_environment_name(name))
        if fmt == "json":
            record = ws.state.environment(name)
            assert record is not None  # describe() raised otherwise
            console.print(jsonout.dumps(jsonout.environment_detail(record, rows, ws.state.history(name))),
                          markup=False, soft_wrap=True)
            return
        table = Table("model", "physical object", "fingerprint", "built", title=name, title_justify="left")
        for model, snapshot in rows:
            note = f" (kept from {snapshot.reused_from[:10]})" if snapshot.reused_from else ""
            table.add_row(model, snapshot.physical + note, snapshot.fingerprint[:10],
                          when(snapshot.created_at))
        console.print(table)
        for entry in ws.state.history(name)[:5]:
            source = f" from {entry.source}" if entry.source else ""
            rolled = " (rolled back)" if entry.rolled_back else ""
            console.print(f"  #{entry.id} {when(entry.created_at)} {entry.action}{source}{rolled}")


@env.command("drop")
@click.argument("name")
@project_options
@handle_errors
def env_drop(name: str, place: Place) -> None:
    """Drop NAME's views and schemas (physical tables stay until the janitor's TTL)."""
    with workspace(place) as ws:
        result = environments.drop(ws.engine, ws.state, check_environment_name(name))
        console.print(f"[green]dropped[/] {name}: {len(result.dropped)} views")



@click.command()
@project_options
@click.option("--ttl", default="7d", show_default=True,
              help="Drop physical objects unreferenced for longer than this (e.g. 12h, 7d, 2w).")
@click.option("--dry-run", is_flag=True, help="Say what would be dropped; drop nothing.")
@handle_errors
def janitor(place: Place, ttl: str, dry_run: bool) -> None:
    """Drop expired environments and physical objects no environment has used for TTL."""
    with workspace(place) as ws:
        report = run_janitor(ws.engine, ws.state, parse_duration(ttl), dry_run=dry_run)
        verb = "would drop" if dry_run else "dropped"
        console.print(f"{verb} {len(report.environments)} environments, {len(report.objects)} physical "
                      f"objects; kept {len(report.kept_for_views)} that kept views still read")
        for name in report.environments:
            console.print(f"  environment {name}")
        for name in report.objects:
            console.print(f"  {name}")


