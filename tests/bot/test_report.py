"""The Markdown report the bot posts, checked against golden files for representative plans, and
kept under each forge's comment limit.

Regenerate after an intended change with: SLUICE_UPDATE_GOLDEN=1 pytest tests/test_report.py
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.report.gate import MergeGate, gate_from
from bot.report.markdown import GITHUB_LIMIT, render_markdown
from bot.worker.governance import Governance
from bot.worker.pipeline import outcome
from policies import Approval, Evaluation, MergeRequestFacts, check_promotion, load_policy
from policies.roles import Role
from runner.engines.duckdb import DuckDBEngine
from runner.pipeline import RunResult, run_pipeline
from runner.plan.builder import make_plan
from runner.project.loader import load_project
from runner.review.summary import review
from runner.state.store import StateStore
from tests.support.paths import DEMO, GOLDEN

GITLAB_LIMIT = 1_000_000
RUN_URL = "https://sluice.example/runs/1"


def stable(text: str) -> str:
    """Timings differ run to run; everything else must not."""
    text = re.sub(r"· \d+\.\d s", "· <elapsed> s", text)
    text = re.sub(r"\| (build `[a-z_.]+`) \| \d+\.\d+ \|\n", "", text)  # their order varies too
    return re.sub(r"\| (plan|build|test|point) \| \d+\.\d+ \|", r"| \1 | <seconds> |", text)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SLUICE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


class Shop:
    def __init__(self, tmp_path: Path):
        self.root = tmp_path / "shop"
        shutil.copytree(DEMO, self.root)
        self.state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        self.engine = DuckDBEngine(tmp_path / "warehouse.duckdb")

    def edit(self, rel: str, old: str, new: str) -> None:
        path = self.root / rel
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    def run(self, env: str, approvals: tuple[str, ...] = (), **kwargs: bool) -> tuple[RunResult, str]:
        project = load_project(self.root)
        result = run_pipeline(project, self.state, self.engine, env, against="prod", **kwargs)
        the_review = review(result.plan, project, self.state, self.engine)
        gate = merge_gate(result, approvals)
        for limit in (GITHUB_LIMIT, GITLAB_LIMIT):
            assert len(render_markdown(result, RUN_URL, the_review, limit=limit, gate=gate)) <= limit
        return result, stable(render_markdown(result, RUN_URL, the_review, limit=GITHUB_LIMIT, gate=gate))


HEAD = "c0ffee" * 6 + "0123"


def merge_gate(result: RunResult, approvals: tuple[str, ...]) -> MergeGate:
    """The gate as the worker makes it: the default policy's promotion rules, for alice's merge
    request approved by `approvals`, with this run's outcome."""
    facts = MergeRequestFacts(author="alice", author_role=int(Role.DEVELOPER), head_sha=HEAD,
                              now=datetime(2026, 3, 4, 10, 0, tzinfo=UTC),
                              approvals=tuple(Approval(a, int(Role.DEVELOPER), HEAD) for a in approvals))
    facts = Governance.with_outcome(facts, outcome(result, Evaluation(findings=())))
    return gate_from(check_promotion(load_policy(None), facts, "prod", protected=True), "prod")


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[Shop]:
    instance = Shop(tmp_path)
    assert instance.run("prod")[0].ok
    yield instance
    instance.engine.close()
    instance.state.close()


def test_no_change(shop: Shop):
    text = shop.run("mr_1", approvals=("bob",))[1]
    check_golden("report_no_change.md", text)
    assert "> **Merge gate** (`sluice/promotion` ✅): merging promotes to `prod`." in text


def test_additive_change(shop: Shop):
    shop.edit("models/marts/customers.sql", "    c.email,\n",
              "    c.email,\n    split_part(c.email, '@', 2) as email_domain,\n")
    result, text = shop.run("mr_1")
    check_golden("report_additive.md", text)
    # Each model's build time is in the timings (left out of the golden file: it varies).
    raw = render_markdown(result, RUN_URL)
    assert result.build.seconds and all(f"| build `{name}` | " in raw for name in result.build.seconds)


def test_breaking_change_with_downstream(shop: Shop):
    shop.edit("models/marts/orders.sql", "p.total_amount as amount",
              "p.total_amount - p.coupon_amount as amount")
    shop.edit("models/staging/stg_customers.sql", "lower(email) as email", "upper(email) as email")
    _, text = shop.run("mr_1")
    check_golden("report_breaking.md", text)
    assert "(`sluice/promotion` ⛔): merging will not promote to `prod`: needs 1 approval from" in text
    assert "the change to `marts.orders`, `staging.stg_customers` is breaking" in text
    assert "`/approve breaking` (developer, maintainer or owner)" in text
    assert text.splitlines()[1].endswith("· built and tested; not ready to merge")
    assert "marts_orders --> marts_revenue_by_day" in text
    assert "`email=" not in text or "***" in text  # pii columns never shown in samples


def test_failing_tests(shop: Shop):
    shop.edit("models/marts/orders.sql", "p.total_amount as amount", "-p.total_amount as amount")
    result, text = shop.run("mr_1")
    assert not result.ok
    check_golden("report_failing.md", text)
    assert "#### ❌ Failed tests" in text and "assert_no_negative_revenue" in text


def test_huge_plan_is_shortened_to_fit_github_and_kept_whole_for_gitlab(tmp_path: Path):
    root = tmp_path / "huge"
    (root / "models" / "staging").mkdir(parents=True)
    (root / "sluice.yml").write_text("name: huge\n")
    (root / "seeds").mkdir()
    (root / "seeds" / "events.csv").write_text("id,kind\n1,a\n")
    for i in range(1200):
        parent = "raw.events" if i < 10 else f"staging.a_rather_long_model_name_number_{i // 10 - 1:04d}"
        (root / "models" / "staging" / f"a_rather_long_model_name_number_{i:04d}.sql").write_text(
            f"select id, kind from {parent}\n")
    project = load_project(root)
    result = RunResult(plan=make_plan(project, "mr_9", None, base={}, known={}))
    the_review = review(result.plan, project, StateStore(f"sqlite:///{tmp_path / 's.db'}"), None)
    full = render_markdown(result, RUN_URL, the_review)
    github = render_markdown(result, RUN_URL, the_review, limit=GITHUB_LIMIT)
    gitlab = render_markdown(result, RUN_URL, the_review, limit=GITLAB_LIMIT)
    assert len(full) > GITHUB_LIMIT
    assert len(github) <= GITHUB_LIMIT and "Shortened to fit this forge's comment limit" in github
    assert f"[the full report]({RUN_URL})" in github
    assert gitlab == full and len(gitlab) <= GITLAB_LIMIT
    check_golden("report_huge_github.md", stable(github))
