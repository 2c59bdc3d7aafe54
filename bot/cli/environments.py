"""`sluice promote`, `rollback`, `env list|show|drop` and `janitor`: moving, inspecting and cleaning
environments."""

from __future__ import annotations

import sys
import time
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from bot.cli import jsonout
from bot.cli.options import (
    Place,
    Workspace,
    actor,
    console,
    errors,
    handle_errors,
    project_options,
    when,
    workspace,
)
from bot.records.audit import AuditLog, moved_views
from runner import environments
from runner.errors import SluiceError
from runner.janitor import parse_duration, run_janitor
from runner.naming import PRODUCTION, check_environment_name
from runner.state.records import BUILD_FAILED, TESTS_FAILED, Verdict

FORMAT = click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
                      show_default=True, help="json: for scripts (README: Scripting).")


@click.command()
@click.argument("source")
@click.argument("target")
@project_options
@click.option("--force", is_flag=True,
              help="Promote into a protected environment although SOURCE's last build or tests "
                   "failed (or are not known); needs --reason, and the audit log keeps both.")
@click.option("--reason", default=None, metavar="TEXT", help="Why --force: kept in the audit log.")
@FORMAT
@handle_errors
def promote(source: str, target: str, place: Place, force: bool, reason: str | None, fmt: str) -> None:
    """Point TARGET at SOURCE's snapshots in one transaction; nothing is rebuilt.

    Into a protected environment (prod, and any `protected: true` in sluice.yml) only when
    SOURCE's last build and tests passed, unless --force --reason "...".

    Example: `sluice promote mr_42 prod`.
    """
    check_environment_name(source)
    check_environment_name(target)
    if force and not (reason or "").strip():
        raise SluiceError('--force needs --reason "why": the audit log records who forced what, and why')
    with workspace(place) as ws:
        clock = time.perf_counter()
        before = ws.state.environment(target)
        protected = _protected(ws, target)
        verdict = ws.state.verdict(source)
        forced = protected and (verdict is None or not verdict.passed)
        if forced and not force:
            raise SluiceError(f"{target} is protected and {_verdict_words(source, verdict)}: not promoted. "
                              f"Fix it and run `sluice plan {source}`, or add --force --reason \"why\" "
                              "(audited)")
        result = environments.promote(ws.engine, ws.state, source, target)
        after = ws.state.environment(target)
        moves = environments.moves_between(ws.state, target, before.models if before else {},
                                           after.models if after else {})
        extra: dict[str, Any] = ({"forced": True, "reason": reason,
                  "source_verdict": verdict.outcome if verdict else None,
                  "source_failure": verdict.detail if verdict else "not known"} if forced else {})
        AuditLog(ws.records).record(actor(), "promote", environment=target, source=source,
                                    before=dict(before.models) if before else {},
                                    after=dict(after.models) if after else {},
                                    moved=len(moves), views=moved_views(moves), **extra)
        seconds = time.perf_counter() - clock
        if fmt == "json":
            console.print(jsonout.dumps({**(jsonout.repoint(result) or {}), "source": source,
                                         "rebuilt": 0, "seconds": round(seconds, 4), "forced": forced}),
                          markup=False, soft_wrap=True)
            return
        note = f" [yellow](forced: {escape(str(reason))}; audited)[/]" if forced else ""
        console.print(f"[green]promoted[/] {source} -> {target}: {len(result.changed)} views moved, "
                      f"{len(result.dropped)} dropped, {result.unchanged} already there, 0 rebuilt "
                      f"({seconds:.2f}s){note}")


def _protected(ws: Workspace, environment: str) -> bool:
    """The project's word (`environments:` in sluice.yml); production always is."""
    if (ws.root / "sluice.yml").is_file():
        return ws.project.config.environment(environment).protected
    return environment == PRODUCTION


def _verdict_words(source: str, verdict: Verdict | None) -> str:
    if verdict is None:
        return f"no passing build and tests are recorded for {source}"
    at = f" at {verdict.commit[:8]}" if verdict.commit else ""
    what = {BUILD_FAILED: "its last build failed", TESTS_FAILED: "its last tests failed"}.get(
        verdict.outcome, f"its last run ended {verdict.outcome}")
    return f"{source}'s last run{at} did not pass ({what}: {verdict.detail})"


@click.command()
@click.argument("env")
@project_options
@click.option("--to", "to", type=int, default=None, metavar="N",
              help="Go back to the version change #N made (`sluice env show ENV` lists them), "
                   "undoing every promotion and plan since.")
@click.option("--yes", "-y", is_flag=True, help="Do not ask before going back more than one step.")
@FORMAT
@handle_errors
def rollback(env: str, place: Place, to: int | None, yes: bool, fmt: str) -> None:
    """Point ENV back at the snapshots it had before its last promotion (or plan): one step.

    Going further back (ENV was rolled back already, or --to N undoes several changes) asks
    first, showing what moves; --yes skips the question, and without a terminal it is needed.
    """
    check_environment_name(env)
    with workspace(place) as ws:
        clock = time.perf_counter()
        plan = environments.plan_rollback(ws.state, env, to)
        before = ws.state.environment(env)
        current = dict(before.models) if before else {}
        preview = environments.moves_between(ws.state, env, current, plan.mapping)
        if plan.further and not yes:
            what = (f"rolling {env} back {len(plan.undone)} changes (undoing "
                    f"{', '.join(f'#{i}' for i in plan.undone)})" if len(plan.undone) > 1 else
                    f"rolling {env} back one more step (it was rolled back already; undoing "
                    f"#{plan.undone[0]})")
            if not sys.stdin.isatty():
                raise SluiceError(f"{what} needs a confirmation: run it in a terminal, or add --yes")
            errors.print(f"{what} moves {len(preview)} views:")
            for move in preview:
                errors.print(f"  {move.view}: {move.before or '(none)'} -> {move.after or '(none)'}")
            if not click.confirm("Go on?", default=False, err=True):
                raise SluiceError(f"not rolled back: {env} is unchanged")
        result = environments.rollback(ws.engine, ws.state, env, to=to, expect=plan)
        after = ws.state.environment(env)
        moves = environments.moves_between(ws.state, env, current, after.models if after else {})
        AuditLog(ws.records).record(actor(), "rollback", environment=env,
                                    before=current, after=dict(after.models) if after else {},
                                    moved=len(moves), views=moved_views(moves),
                                    undone=list(plan.undone), to=plan.to)
        if fmt == "json":
            console.print(jsonout.dumps({**(jsonout.repoint(result) or {}), "rebuilt": 0,
                                         "undone": list(plan.undone), "to": plan.to,
                                         "seconds": round(time.perf_counter() - clock, 4)}),
                          markup=False, soft_wrap=True)
            return
        console.print(f"[green]rolled back[/] {env}: {len(result.changed)} views moved back, "
                      f"{len(result.dropped)} dropped (undid {', '.join(f'#{i}' for i in plan.undone)})")


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


