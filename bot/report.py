"""Render a run as the Markdown report the bot posts in the merge request (Jinja template)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from runner.pipeline import RunResult
from runner.plan import Action, Change, PlannedNode


@dataclass(frozen=True)
class Verdict:
    icon: str
    text: str


def verdict(result: RunResult) -> Verdict:
    if result.dry_run:
        return Verdict("📝", "plan only (dry run)")
    if not result.build.ok:
        return Verdict("❌", "build failed")
    if not result.tests.ok:
        return Verdict("❌", "tests failing")
    if any(n.change is Change.DIRECT and n.category.startswith("breaking") for n in result.plan.nodes):
        return Verdict("⚠️", "ready, with breaking changes")
    return Verdict("✅", "ready")


def _cell(value: Any) -> str:
    text = "NULL" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:80]


def _code_safe(text: str) -> str:
    return "`" + text.replace("`", "'").replace("\n", " ")[:500] + "`"


def _why(node: PlannedNode) -> str:
    return _cell(node.reason) if node.reason else ""


def _column_parts(node: PlannedNode) -> list[str]:
    parts = []
    for label, columns in (("added", node.columns.added), ("removed", node.columns.removed),
                           ("changed", node.columns.changed)):
        if columns:
            parts.append(f"{label} " + ", ".join(f"`{c}`" for c in sorted(columns)))
    return parts


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("bot", "templates"), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                      autoescape=False)
    env.filters.update(cell=_cell, code_safe=_code_safe, why=_why, tick=lambda s: f"`{s}`")
    return env


def render_markdown(result: RunResult, run_url: str | None = None) -> str:
    plan = result.plan
    changes = [n for n in plan.nodes if n.change is not Change.UNCHANGED]
    column_changes = [(n.name, _column_parts(n)) for n in changes
                      if n.change is Change.DIRECT and not n.columns.everything and not n.columns.is_empty]
    context = {
        "plan": plan,
        "verdict": verdict(result),
        "counts": {
            "modified": sum(1 for n in changes if n.change in (Change.DIRECT, Change.ADDED, Change.REMOVED)),
            "built": result.built,
            "reused": sum(1 for n in plan.nodes if n.action is Action.REUSE),
            "tests_passed": len(result.tests.passed),
            "tests_failed": len(result.tests.failed),
        },
        "elapsed": sum(result.timings.values()),
        "run_url": run_url,
        "held_back": result.held_back,
        "build_failures": sorted(result.build.failed.items()),
        "skipped": sorted(result.build.skipped),
        "changes": changes,
        "column_changes": column_changes,
        "tests_failed": result.tests.failed,
        "tests_passed": result.tests.passed,
        "timings": list(result.timings.items()),
    }
    text = _environment().get_template("report.md.j2").render(**context)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text
