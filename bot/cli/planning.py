"""`sluice plan` and `sluice test`: the merge-request pipeline on a laptop, and the data tests."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, TypeVar

import click

from bot.cli import console as out
from bot.cli import jsonout
from bot.cli.options import (
    Place,
    Workspace,
    console,
    default_environment,
    handle_errors,
    project_options,
    workspace,
)
from bot.report.markdown import render_markdown
from runner import environments
from runner.artifacts import write_artifacts
from runner.datatests import run_tests, select_tests
from runner.errors import SluiceError
from runner.naming import check_environment_name
from runner.pipeline import RunResult, execute, plan_environment
from runner.plan.definition import Change, Plan
from runner.project import selectors
from runner.project.nodes import Project
from runner.review.summary import review

F = TypeVar("F", bound=Callable[..., Any])


def selection_options(func: F) -> F:
    """`--select` and `--exclude`, in dbt's selector grammar (runner/project/selectors.py)."""
    func = click.option("--exclude", "exclude", multiple=True, metavar="SELECTOR",
                        help="Leave out what these selectors select (same grammar as --select).")(func)
    return click.option(
        "--select", "-s", "select", multiple=True, metavar="SELECTOR",
        help="Only these models and seeds, in dbt's grammar: NAME (glob ok), +NAME (and its "
             "ancestors), NAME+ (descendants), N+NAME / NAME+N (N levels), @NAME, tag:T, "
             "path:models/marts, config.materialized:view, source:S, state:modified[+] (changed "
             "against the environment), state:new; spaces unite, commas intersect.")(func)


def state_changes(plan: Plan) -> selectors.StateChanges:
    """What `state:` selects: the nodes whose definition differs from the compared environment."""
    return selectors.StateChanges(
        modified=frozenset(n.name for n in plan.nodes if n.change is Change.DIRECT),
        new=frozenset(n.name for n in plan.nodes if n.change is Change.ADDED))


def selection(project: Project, select: Collection[str], exclude: Collection[str],
              compare: Callable[[], Plan]) -> frozenset[str] | None:
    """The selected node names, or None when no selector was given."""
    if not select and not exclude:
        return None
    return selectors.select(project, tuple(select), tuple(exclude),
                            state=lambda: state_changes(compare()))


@click.command()
@click.argument("env", required=False)
@project_options
@click.option("--dry-run", is_flag=True, help="Print the plan; build and change nothing.")
@click.option("--threads", type=click.IntRange(1, 64), default=None,
              help="Models built at the same time (default: build.threads in sluice.yml).")
@click.option("--all-tests", is_flag=True, help="Run every test, not only those on changed models.")
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text",
              show_default=True, help="markdown prints the report the bot would post; json is for "
                                      "scripts (README: Scripting).")
@click.option("--verbose", "-v", is_flag=True, help="List unchanged models too.")
@selection_options
@handle_errors
def plan(env: str | None, place: Place, dry_run: bool, threads: int | None, all_tests: bool, fmt: str,
         verbose: bool, select: tuple[str, ...], exclude: tuple[str, ...]) -> None:
    """Plan the project against ENV, build what is missing, test, and point ENV's views.

    ENV defaults to a dev environment named after the current git branch; `prod` is production.
    With --select/--exclude only the selected models change in ENV (and what they read that ENV
    lacks); the others keep the snapshots ENV (or production, for a new ENV) has.
    Exits 1 when a build or a test fails.
    """
    with workspace(place) as ws:
        target = check_environment_name(env or default_environment(place.project_dir))
        chosen = selection(ws.project, select, exclude,
                           lambda: plan_environment(ws.project, ws.state, target))
        result = run_with_output(ws, target, dry_run=dry_run, threads=threads, all_tests=all_tests,
                                 text=fmt == "text", verbose=verbose, selected=chosen)
        if not dry_run:  # dbt writes them after a failed run too: they say what failed
            folder = artifacts_folder(ws, target)
            write_artifacts(folder, ws.project, result, ws.engine)
            if fmt == "text":
                console.print(f"dbt artifacts: {folder}/ (manifest.json, run_results.json, catalog.json)",
                              markup=False, soft_wrap=True)
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
        elif fmt == "json":
            console.print(jsonout.dumps(jsonout.plan(result)), markup=False, soft_wrap=True)
        if not result.ok or result.held_back:
            sys.exit(1)


def artifacts_folder(ws: Workspace, environment: str) -> Path:
    """PROJECT/.sluice/artifacts/ENV/, overwritten by each plan of ENV, like dbt's target/ (the
    parse cache lives elsewhere: it must never be read from a checkout, artifacts are only
    written)."""
    return ws.root / ".sluice" / "artifacts" / environment


def run_with_output(ws: Workspace, target: str, *, dry_run: bool = False, threads: int | None = None,
                    all_tests: bool = False, text: bool = True, verbose: bool = False,
                    selected: Collection[str] | None = None) -> RunResult:
    """The pipeline with the plan, progress and results printed as it goes (when `text`)."""
    clock = time.perf_counter()
    the_plan = plan_environment(ws.project, ws.state, target, selected=selected)
    seconds = time.perf_counter() - clock
    if text:
        out.print_plan(console, the_plan, verbose)
        out.print_notes(console, the_plan, ws.project)
    total = 0 if dry_run or not text else len(the_plan.to_build)
    with out.build_progress(console, total, quiet=not text) as progress:
        result = execute(the_plan, ws.project, ws.state, ws.engine, dry_run=dry_run, threads=threads,
                         all_tests=all_tests, progress=progress, plan_seconds=seconds,
                         on_test=(lambda r: out.print_test(console, r)) if text else None)
    if text and not dry_run:
        out.print_summary(console, result)
    return result



@click.command()
@click.argument("env")
@project_options
@click.option("--changed-only", is_flag=True, help="Only tests on models whose data the last plan changed.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@selection_options
@handle_errors
def test(env: str, place: Place, changed_only: bool, fmt: str, select: tuple[str, ...],
         exclude: tuple[str, ...]) -> None:
    """Run the project's data tests against ENV's current snapshots. Exits 1 on a failure.

    With --select/--exclude: the tests on the selected models (a test reading several models
    runs when any of them is selected)."""
    with workspace(place) as ws:
        chosen = selection(ws.project, select, exclude,
                           lambda: plan_environment(ws.project, ws.state, env))
        rows = environments.describe(ws.state, check_environment_name(env))
        physical = {name: (s.physical_schema, s.physical_table) for name, s in rows}
        changed = None
        if changed_only:
            history = ws.state.history(env)
            changed = set(history[0].after) - set(history[0].before) if history else set()
        tests = [t for t in select_tests(ws.project, changed)
                 if all(d in physical or d in ws.project.sources for d in (t.model, *t.depends_on) if d)
                 and (chosen is None or any(d in chosen for d in (t.model, *t.depends_on) if d))]
        text = fmt == "text"
        result = run_tests(tests, ws.project, ws.engine, physical,
                           (lambda r: out.print_test(console, r)) if text else None)
        if text:
            colour = "green" if result.ok else "red"
            warned = f" ({len(result.warned)} warned)" if result.warned else ""
            console.print(f"[{colour}]{len(result.passed)} passed{warned}, {len(result.failed)} failed[/]")
        else:
            console.print(jsonout.dumps({"environment": env, **jsonout.checks(result)}), markup=False,
                          soft_wrap=True)
        if not result.ok:
            sys.exit(1)
