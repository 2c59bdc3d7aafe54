"""`sluice demo`: the merge-request flow on a sample shop repository, start to finish, in seconds.

It creates a git repository from the sample project, builds production from `main`, opens a
branch that rewrites one column and adds another, runs the pipeline the bot runs for a merge
request, prints the report the bot would post, merges, promotes, and says what was built and what
was reused.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path

import git
from rich.console import Console
from rich.table import Table

from bot.report.markdown import render_markdown
from runner import environments
from runner.engines import open_engine
from runner.errors import SluiceError
from runner.naming import PRODUCTION
from runner.pipeline import RunResult, run_pipeline
from runner.project.loader import load_project
from runner.review.summary import review
from runner.settings import local_settings
from runner.state.store import StateStore

BRANCH = "orders-exclude-coupons"
MR_ENV = "mr_1"

# The branch's two edits: one column's expression changes, another model gains a column.
EDITS = {
    "models/marts/orders.sql": ("p.total_amount as amount",
                                "p.total_amount - p.coupon_amount as amount"),
    "models/marts/customers.sql": ("    c.email,\n",
                                   "    c.email,\n    split_part(c.email, '@', 2) as email_domain,\n"),
}


def sample_project(target: Path) -> None:
    source = resources.files("bot.demo") / "project"
    with resources.as_file(source) as path:
        shutil.copytree(path, target, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(".sluice", "__pycache__"))


def _commit(repo: git.Repo, message: str) -> str:
    repo.git.add(A=True)
    actor = git.Actor("Sluice Demo", "demo@sluice.invalid")
    return repo.index.commit(message, author=actor, committer=actor).hexsha[:8]


def run_demo(console: Console, directory: Path | None = None) -> bool:
    root = Path(directory or tempfile.mkdtemp(prefix="sluice-demo-")).resolve()
    if (root / ".git").exists():
        raise SluiceError(f"{root} already holds a git repository; pass an empty --dir")
    root.mkdir(parents=True, exist_ok=True)
    sample_project(root)
    repo = git.Repo.init(root, initial_branch="main")
    (root / ".gitignore").write_text(".sluice/\n")
    first = _commit(repo, "Shop project: seeds, staging and mart models, tests")
    console.rule("[bold]Sluice demo")
    console.print(f"Sample repository: [bold]{root}[/] (main at {first})")

    settings = local_settings(root)
    state = StateStore(settings.state_url)
    engine = open_engine(settings.warehouse_url("default"))
    steps: list[tuple[str, float, int, int]] = []
    try:
        def step(title: str, env: str) -> RunResult:
            console.rule(title)
            project = load_project(root, cache_dir=settings.cache_dir)
            clock = time.perf_counter()
            result = run_pipeline(project, state, engine, env)
            seconds = time.perf_counter() - clock
            steps.append((title, seconds, result.built, result.reused))
            return result

        prod = step("1. Build production from main", PRODUCTION)
        console.print(f"built {prod.built} snapshots, tests: {len(prod.tests.passed)} passed, "
                      f"{len(prod.tests.failed)} failed")
        if not prod.ok:
            console.print(render_markdown(prod), markup=False)
            return False

        repo.git.checkout("-b", BRANCH)
        for rel, (old, new) in EDITS.items():
            path = root / rel
            text = path.read_text()
            if old not in text:
                raise SluiceError("the sample project changed; cannot apply the demo edit", file=rel)
            path.write_text(text.replace(old, new))
        head = _commit(repo, "Exclude coupons from order amount; add customers.email_domain")
        console.print(f"\nBranch [bold]{BRANCH}[/] at {head}: orders.amount rewritten, "
                      "customers.email_domain added")

        mr = step(f"2. Merge request !1 ({BRANCH}) -> environment {MR_ENV}", MR_ENV)
        clock = time.perf_counter()
        mr_review = review(mr.plan, load_project(root, cache_dir=settings.cache_dir), state, engine)
        steps.append(("   report: SQL and data diffs, lineage", time.perf_counter() - clock, 0, 0))
        console.print("[dim]The report the bot posts in the merge request (Markdown):[/]\n")
        console.print(render_markdown(mr, review=mr_review), markup=False, highlight=False,
                      soft_wrap=True)
        if not mr.ok:
            return False

        console.rule("3. Merge: promote the tested snapshots to production")
        repo.git.checkout("main")
        repo.git.merge("--no-ff", BRANCH, "-m", f"Merge branch '{BRANCH}'")
        clock = time.perf_counter()
        promoted = environments.promote(engine, state, MR_ENV, PRODUCTION)
        seconds = time.perf_counter() - clock
        steps.append(("3. Promote mr_1 -> prod", seconds, 0, len(promoted.changed) + promoted.unchanged))
        console.print(f"prod moved {len(promoted.changed)} views to mr_1's snapshots; 0 rebuilt")

        after = step("4. Plan prod at the merge commit (expect nothing to do)", PRODUCTION)
        console.print("prod already matches main: nothing to build" if after.plan.is_noop
                      else f"[red]unexpected work: {after.built} built[/]")
    finally:
        engine.close()
        state.close()

    table = Table("step", "seconds", "tables built", "reused (zero-copy)", title="Where the time went",
                  title_justify="left")
    for title, seconds, built, reused in steps:
        table.add_row(title, f"{seconds:.2f}", str(built), str(reused))
    console.print(table)
    console.print(f"Explore it: [bold]sluice env show prod --project {root}[/], "
                  f"[bold]sluice rollback prod --project {root}[/]")
    return True
