"""The Markdown report the bot posts, checked against a golden file.

Regenerate after an intended change with: SLUICE_UPDATE_GOLDEN=1 pytest tests/test_report.py
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from bot.report import render_markdown
from runner.engines.duckdb import DuckDBEngine
from runner.pipeline import run_pipeline
from runner.project import load_project
from runner.state import StateStore

DEMO = Path(__file__).resolve().parent.parent / "runner" / "demo_project"
GOLDEN = Path(__file__).resolve().parent / "golden"


def stable(text: str) -> str:
    """Timings differ run to run; everything else must not."""
    text = re.sub(r"· \d+\.\d s", "· <elapsed> s", text)
    return re.sub(r"\| (plan|build|test|point) \| \d+\.\d+ \|", r"| \1 | <seconds> |", text)


def check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("SLUICE_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_merge_request_report_matches_golden(tmp_path: Path):
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    engine = DuckDBEngine(tmp_path / "warehouse.duckdb")
    try:
        assert run_pipeline(load_project(root), state, engine, "prod").ok
        orders = root / "models/marts/orders.sql"
        orders.write_text(orders.read_text().replace("p.total_amount as amount",
                                                     "p.total_amount - p.coupon_amount as amount"))
        customers = root / "models/marts/customers.sql"
        customers.write_text(customers.read_text().replace(
            "    c.email,\n", "    c.email,\n    split_part(c.email, '@', 2) as email_domain,\n"))
        result = run_pipeline(load_project(root), state, engine, "mr_1")
        check_golden("mr_report.md", stable(render_markdown(result, run_url="https://sluice.example/runs/1")))

        (root / "tests" / "no_coupons.sql").write_text(
            "select order_id, coupon_amount from marts.orders where coupon_amount > 0\n")
        failing = run_pipeline(load_project(root), state, engine, "mr_1", all_tests=True)
        check_golden("mr_report_failing.md", stable(render_markdown(failing)))
    finally:
        engine.close()
        state.close()
