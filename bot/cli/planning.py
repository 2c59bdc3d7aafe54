"""`sluice plan` and `sluice test`: the merge-request pipeline on a laptop, and the data tests."""

from __future__ import annotations

import sys
import time

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
from runner.datatests import run_tests, select_tests
from runner.errors import SluiceError
from runner.naming import check_environment_name
from runner.pipeline import RunResult, execute, plan_environment
from runner.review.summary import review


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
@handle_errors
def plan(env: str | None, place: Place, dry_run: bool, threads: int | None, all_tests: bool, fmt: str,
         verbose: bool) -> None:
    """Plan the project against ENV, build what is missing, test, and point ENV's views.

    ENV defaults to a dev environment named after the current git branch; `prod` is production.
    Exits 1 when a build or a test fails.
    """
    with workspace(place) as ws:
        target = check_environment_name(env or default_environment(place.project_dir))
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
        elif fmt == "json":
            console.print(jsonout.dumps(jsonout.plan(result)), markup=False, soft_wrap=True)
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
@handle_errors
def test(env: str, place: Place, changed_only: bool, fmt: str) -> None:
    """Run the project's data tests against ENV's current snapshots. Exits 1 on a failure."""
    with workspace(place) as ws:
        rows = environments.describe(ws.state, check_environment_name(env))
        physical = {name: (s.physical_schema, s.physical_table) for name, s in rows}
        changed = None
        if changed_only:
            history = ws.state.history(env)
            changed = set(history[0].after) - set(history[0].before) if history else set()
        tests = [t for t in select_tests(ws.project, changed)
                 if all(d in physical or d in ws.project.sources for d in (t.model, *t.depends_on) if d)]
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
