"""The review behind the report: drift when a source changed since production was built, and the
rebuilt baseline that keeps the diff to the change's own effect."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.report.markdown import render_markdown
from runner.engines.duckdb import DuckDBEngine
from runner.pipeline import run_pipeline
from runner.project.loader import load_project
from runner.review.summary import review
from runner.state.store import StateStore
from tests.support.repos import Shop

MODEL = "select id, amount * {factor} as amount from raw.events\n"


@pytest.fixture
def setup(tmp_path: Path):
    root = tmp_path / "p"
    (root / "models" / "marts").mkdir(parents=True)
    (root / "models" / "sources.yml").write_text(
        "sources:\n  - name: raw\n    tables:\n      - name: events\n"
        "        columns: [{name: id}, {name: amount}]\n"
        "models:\n  - name: events_value\n    unique_key: id\n")
    engine = DuckDBEngine(tmp_path / "w.duckdb")
    state = StateStore(f"sqlite:///{tmp_path / 's.db'}")
    with engine.cursor() as cursor:
        cursor.execute("create schema raw")
        cursor.execute("create table raw.events as select range as id, range * 1.0 as amount from range(100)")
    yield root, engine, state
    engine.close()
    state.close()


def write(root: Path, factor: int, baseline: str = "prod") -> None:
    (root / "sluice.yml").write_text(f"name: p\ndiff:\n  baseline: {baseline}\n")
    (root / "models" / "marts" / "events_value.sql").write_text(MODEL.format(factor=factor))


def test_drift_is_reported_and_a_rebuilt_baseline_isolates_the_change(setup):
    root, engine, state = setup
    write(root, 1)
    assert run_pipeline(load_project(root), state, engine, "prod").ok
    # New data arrives in the source after production was built: 50 rows more.
    with engine.cursor() as cursor:
        cursor.execute("insert into raw.events select range, range * 1.0 from range(100, 150)")

    write(root, 2)  # the change: double every amount
    project = load_project(root)
    result = run_pipeline(project, state, engine, "mr_1", against="prod")
    plain = review(result.plan, project, state, engine).model("marts.events_value")
    assert plain is not None and plain.drift == ("raw.events",) and plain.baseline == "production"
    assert plain.data is not None and plain.data.added == 50  # new data mixed into the diff
    assert "Drift" in render_markdown(result, review=review(result.plan, project, state, engine))

    write(root, 2, baseline="rebuild")
    project = load_project(root)
    rebuilt = review(result.plan, project, state, engine).model("marts.events_value")
    assert rebuilt is not None and rebuilt.baseline == "rebuilt"
    assert rebuilt.data is not None
    assert (rebuilt.data.added, rebuilt.data.removed) == (0, 0)  # only the change's effect
    assert rebuilt.data.changed == 149  # every row but id 0 (0 * 2 == 0)
    # The baseline table is gone afterwards.
    assert not [o for o in engine.objects() if o.name.endswith("__baseline")]


def test_no_drift_when_the_source_did_not_change(setup):
    root, engine, state = setup
    write(root, 1)
    assert run_pipeline(load_project(root), state, engine, "prod").ok
    write(root, 3)
    project = load_project(root)
    result = run_pipeline(project, state, engine, "mr_2", against="prod")
    found = review(result.plan, project, state, engine).model("marts.events_value")
    assert found is not None and found.drift == ()
    assert found.data is not None and found.data.changed == 99


def test_the_report_tells_the_same_story_on_a_rerun(shop: Shop, tmp_path: Path):
    """The impact is the plan against production: a second run, which finds every snapshot
    already built, still names the downstream models, the exposure they reach, and their colours."""
    engine = DuckDBEngine(tmp_path / "shop.duckdb")
    state = StateStore(f"sqlite:///{tmp_path / 'shop.db'}")
    try:
        assert run_pipeline(shop.load(), state, engine, "prod").ok
        shop.edit("models/marts/orders.sql", "p.total_amount as amount",
                  "p.total_amount - p.coupon_amount as amount")
        stories = []
        for _ in range(2):
            project = shop.load()
            result = run_pipeline(project, state, engine, "mr_1", against="prod")
            stories.append((result.built, review(result.plan, project, state, engine).impact))
        (built_first, first), (built_again, again) = stories
        assert built_first > 0 and built_again == 0  # the rerun built nothing...
        assert again == first  # ...and says the same
        assert [d.name for d in again.downstream] == ["marts.revenue_by_day"]
        assert "marts.revenue_by_day" not in [u.name for u in again.unaffected]
        assert [e.exposure.name for e in again.exposures] == ["revenue_dashboard"]
        assert 'marts_revenue_by_day["marts.revenue_by_day<br/><i>revenue</i>"]:::breaking' in again.mermaid
    finally:
        engine.close()
        state.close()
