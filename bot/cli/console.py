"""Terminal output for the command line: coloured plans, build progress, test results (rich)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from runner.build import Progress as BuildProgress
from runner.datatests import TestResult
from runner.pipeline import RunResult
from runner.plan.definition import Action, Change, Plan, PlannedNode
from runner.project.nodes import Project

CHANGE_STYLE = {
    Change.ADDED: "green",
    Change.REMOVED: "red",
    Change.DIRECT: "yellow",
    Change.INDIRECT: "cyan",
    Change.UNCHANGED: "dim",
}


def print_notes(console: Console, plan: Plan, project: Project) -> None:
    """What the plan does differently from what the project's files ask (e.g. dbt incremental
    models built in full)."""
    for node in plan.to_build:
        model = project.models.get(node.name)
        for note in model.notes if model else ():
            console.print(f"[yellow]note:[/] {node.name}: {escape(note)}")


def print_plan(console: Console, plan: Plan, verbose: bool = False) -> None:
    against = plan.base or "an empty warehouse"
    changed = plan.changed
    if not changed and not plan.to_build:
        console.print(f"[bold]{plan.environment}[/]: no changes against {against}; nothing to build.")
        return
    table = Table(title=f"Plan for {plan.environment} (against {against})", title_justify="left")
    for column in ("model", "change", "category", "action", "why"):
        table.add_column(column)
    for node in plan.nodes:
        if node.change is Change.UNCHANGED and not verbose and node.action is not Action.BUILD:
            continue
        table.add_row(*_row(node))
    console.print(table)
    reused = sum(1 for n in plan.nodes if n.action is Action.REUSE)
    console.print(f"[bold]{len(plan.to_build)}[/] to build, [bold]{reused}[/] reused zero-copy, "
                  f"{sum(1 for n in plan.nodes if n.change is Change.REMOVED)} removed.")


def _row(node: PlannedNode) -> tuple[str, ...]:
    style = CHANGE_STYLE[node.change]
    action_style = "bold magenta" if node.action is Action.BUILD else "green"
    category = node.category
    if category.startswith("breaking"):
        category = f"[red]{category}[/]"
    elif category:
        category = f"[green]{category}[/]"
    return (node.name, f"[{style}]{node.change.value}[/]", category,
            f"[{action_style}]{node.action.value}[/]", escape(node.reason))


@contextmanager
def build_progress(console: Console, total: int, quiet: bool = False) -> Iterator[BuildProgress | None]:
    if quiet:
        yield None
        return
    if total == 0 or not console.is_terminal:
        def plain(node: PlannedNode, event: str) -> None:
            if event != "start":
                colour = {"done": "green", "failed": "red", "skipped": "yellow"}[event]
                console.print(f"  [{colour}]{event:>7}[/] {node.name}")
        yield plain
        return
    with Progress(TextColumn("[bold]building"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
                  transient=False) as progress:
        task = progress.add_task("", total=total)

        def update(node: PlannedNode, event: str) -> None:
            if event == "start":
                progress.update(task, description=node.name)
            else:
                progress.advance(task)
                if event != "done":
                    progress.console.print(f"  [red]{event}[/] {node.name}")
        yield update


def print_test(console: Console, result: TestResult) -> None:
    """A failing (or warning) test: what failed, a few of its failing rows, and the query that
    found them."""
    if result.passed and not result.warned:
        return
    where = f"{result.test.file}:{result.test.line}" if result.test.line else result.test.file
    what = f"error: {escape(result.error)}" if result.error else f"{result.failures} failing rows"
    mark = "[yellow]WARN[/]" if result.warned else "[red]FAIL[/]"
    console.print(f"  {mark} {escape(result.test.name)} ({where}): {what}")
    if result.sample:
        table = Table(*result.columns, box=None, padding=(0, 1), show_edge=False)
        for row in result.sample:
            table.add_row(*(escape("NULL" if v is None else str(v)) for v in row))
        console.print(table)
        more = result.failures - len(result.sample)
        if more > 0:
            console.print(f"  [dim]… and {more} more[/]")
    if result.sql:
        console.print("  [dim]query:[/] " + escape(" ".join(result.sql.split())), soft_wrap=True)


SLOWEST = 10  # models whose build time the summary shows


def print_summary(console: Console, result: RunResult) -> None:
    for _, message in sorted(result.build.failed.items()):
        console.print(f"[red]build failed[/] {escape(message)}")
    if result.build.skipped:
        console.print(f"[yellow]skipped[/] (upstream failed): {', '.join(sorted(result.build.skipped))}")
    tests = result.tests
    if tests.results:
        colour = "green" if tests.ok else "red"
        warned = f" ({len(tests.warned)} warned)" if tests.warned else ""
        console.print(f"[{colour}]tests: {len(tests.passed)} passed{warned}, {len(tests.failed)} failed[/]")
    if result.held_back:
        console.print(f"[yellow]not deployed:[/] {result.held_back}")
    elif result.repoint is not None:
        console.print(f"[green]{result.plan.environment}[/] now points at {len(result.plan.mapping)} "
                      f"snapshots ({len(result.repoint.changed)} views moved, "
                      f"{len(result.repoint.dropped)} dropped).")
    timing = ", ".join(f"{k} {v:.2f}s" for k, v in result.timings.items())
    console.print(f"built {result.built}, reused {result.reused} · {timing}")
    slowest = sorted(result.build.seconds.items(), key=lambda item: (-item[1], item[0]))[:SLOWEST]
    if slowest:
        shown = ", ".join(f"{name} {seconds:.2f}s" for name, seconds in slowest)
        more = len(result.build.seconds) - len(slowest)
        console.print(f"build time per model: {shown}" + (f" (+{more} faster)" if more > 0 else ""))
