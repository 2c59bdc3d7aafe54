"""Render a run as the Markdown report the bot posts in the merge request (Jinja template)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from bot.report.gate import MergeGate
from bot.report.gate import section as gate_section
from policies.roles import role_names
from runner.lineage.model import ALL
from runner.pipeline import RunResult
from runner.plan.categorize import ColumnChange
from runner.plan.definition import Action, Change, PlannedNode
from runner.review.sqldiff import SqlDiff
from runner.review.summary import Review

if TYPE_CHECKING:
    from policies import Evaluation
    from runner.review.datadiff import DataDiff


@dataclass(frozen=True)
class Verdict:
    icon: str
    text: str


def verdict(result: RunResult, policy: Evaluation | None = None, gate: MergeGate | None = None) -> Verdict:
    """The headline. "ready" only when merging would promote (or no gate was asked for, on a
    laptop): a report never says ready while the promotion rules would refuse the merge."""
    if result.dry_run:
        return Verdict("📝", "plan only (dry run)")
    if not result.build.ok:
        return Verdict("❌", "build failed")
    if not result.tests.ok:
        return Verdict("❌", "tests failing")
    if policy is not None and not policy.ok:
        return Verdict("⛔", "policy blocked")
    if gate is not None and not gate.green:
        return Verdict("⏸", "built and tested; not ready to merge")
    if any(n.change is Change.DIRECT and n.category.startswith("breaking") for n in result.plan.nodes):
        return Verdict("⚠️", "ready, with breaking changes")
    return Verdict("✅", "ready")


def _cell(value: Any) -> str:
    text = "NULL" if value is None else (f"{value:.10g}" if isinstance(value, float) else str(value))
    return text.replace("|", "\\|").replace("\n", " ")[:80]


def _fenced(text: str, language: str = "", indent: int = 0) -> str:
    """A fenced code block that no backticks in `text` can close early (text from a merge request)."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    pad = " " * indent
    body = "\n".join(pad + line for line in text.splitlines())
    return f"{pad}{fence}{language}\n{body}\n{pad}{fence}"


def _code_safe(text: str) -> str:
    return "`" + text.replace("`", "'").replace("\n", " ")[:500] + "`"


def _why(node: PlannedNode) -> str:
    return _cell(node.reason) if node.reason else ""


def _column_parts(change: ColumnChange) -> list[str]:
    parts = []
    for label, columns in (("added", change.added), ("removed", change.removed),
                           ("changed", change.changed)):
        if columns:
            shown = "every column" if ALL in columns else ", ".join(f"`{c}`" for c in sorted(columns))
            parts.append(f"{label} {shown}")
    return parts


def _number(value: int) -> str:
    return f"{value:,}"


def _sample(pair: tuple[dict[str, Any] | None, dict[str, Any] | None], key: tuple[str, ...]) -> str:
    """One sample row: its key and the columns that differ; an added or removed row in full."""
    before, after = pair

    def text(row: dict[str, Any], columns: list[str]) -> str:
        return "`" + ", ".join(f"{c}={_value(row.get(c))}" for c in columns).replace("`", "'")[:300] + "`"

    if before is not None and after is not None:
        changed = [c for c in after if c not in key and c in before and before[c] != after[c]]
        columns = [c for c in key if c in after] + changed
        return f"{text(before, columns)} → {text(after, columns)}"
    if after is not None:
        return f"added: {text(after, list(after)[:8])}"
    assert before is not None
    return f"removed: {text(before, list(before)[:8])}"


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    return _cell(value)


def _link(url: str) -> str:
    return f"<{url}>" if url.startswith(("https://", "http://")) and " " not in url else _cell(url)


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("bot.report", "templates"), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                      autoescape=False)
    env.filters.update(cell=_cell, code_safe=_code_safe, why=_why, tick=lambda s: f"`{s}`",
                       num=_number, link=_link, fenced=_fenced)
    env.globals["sample"] = _sample
    return env


LEVELS = (0, 1, 2, 3, 4)
GITHUB_LIMIT = 65_536


def render_markdown(result: RunResult, run_url: str | None = None, review: Review | None = None,
                    limit: int | None = None, policy: Evaluation | None = None,
                    notes: Sequence[str] = (), gate: MergeGate | None = None) -> str:
    """The report; with `limit`, the most detailed version that fits (least important parts go
    first), cut hard with a link only if even the shortest does not. `gate`: what merging will do
    (the bot's reports; `sluice plan` on a laptop has no merge request)."""
    text = ""
    for level in LEVELS if limit else (0,):
        text = _render(result, run_url, review, level, policy, notes, gate)
        if limit is None or len(text) <= limit:
            return text
    note = f"\n\n… cut to fit; the full report is at {run_url}\n" if run_url else "\n\n… cut to fit\n"
    assert limit is not None
    return text[: max(0, limit - len(note))] + note


def _render(result: RunResult, run_url: str | None, review: Review | None, level: int,
            policy: Evaluation | None = None, notes: Sequence[str] = (),
            gate: MergeGate | None = None) -> str:
    plan = result.plan
    changes = [n for n in plan.nodes if n.change is not Change.UNCHANGED]
    models = review.models if review else ()
    sql_changes = [_SqlChange(m.name, m.change, m.category, m.sql, _column_parts(m.columns))
                   for m in models if m.change is Change.DIRECT]
    data_diffs = [_DataChange(m.name, m.data, m.pii, m.drift, m.baseline)
                  for m in models if m.data is not None]
    schema_changes = [(m.name, m.data.schema) for m in models if m.data is not None
                      and (m.data.schema.added or m.data.schema.removed or m.data.schema.retyped)]
    data_notes = [(m.name, m.data_note) for m in models if m.data_note and m.change is not Change.ADDED]
    context = {
        "level": level,
        "plan": plan,
        "plan_rows": (10**6, 500, 200, 50, 0)[level],
        "column_rows": (50, 20, 10, 5, 0)[level],
        "verdict": verdict(result, policy, gate),
        "gate": gate_section(gate) if gate is not None else "",
        "policy": policy,
        "notes": list(notes),
        "role_names": role_names,
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
        "sql_changes": sql_changes,
        "schema_changes": schema_changes,
        "data_diffs": data_diffs,
        "data_notes": data_notes,
        "impact": review.impact if review else None,
        "tests_failed": result.tests.failed,
        "tests_passed": result.tests.passed,
        "timings": list(result.timings.items()),
        "model_timings": sorted(result.build.seconds.items(), key=lambda item: (-item[1], item[0]))[
            :(20, 20, 10, 5, 0)[level]],
    }
    text = _environment().get_template("report.md.j2").render(**context)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text


@dataclass(frozen=True)
class _SqlChange:
    name: str
    change: Change
    category: str
    sql: SqlDiff | None
    parts: list[str]


@dataclass(frozen=True)
class _DataChange:
    name: str
    data: DataDiff
    pii: frozenset[str]
    drift: tuple[str, ...] = ()
    baseline: str = "production"


def render_data_diff(name: str, diff: DataDiff, pii: frozenset[str] = frozenset(),
                     where: str | None = None) -> str:
    """One model's data diff as Markdown (`/diff`, `sluice diff --format markdown`)."""
    text = _environment().get_template("diff.md.j2").render(name=name, d=diff, pii=pii, where=where)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"
