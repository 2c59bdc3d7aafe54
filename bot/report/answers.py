"""Answers to `/diff` and `/lineage` (and their command-line twins): one model's change and its
place in the graph, as Markdown, with the data diff computed in the warehouse."""

from __future__ import annotations

from bot.commands import Command
from bot.report.markdown import render_data_diff
from runner.engines.base import Engine
from runner.lineage.model import ALL
from runner.lineage.project import resolve_target, trace
from runner.naming import PRODUCTION
from runner.pipeline import plan_environment
from runner.plan.definition import Change
from runner.project.nodes import Project
from runner.review.compare import compare
from runner.state.store import StateStore


def describe_diff(project: Project, state: StateStore, engine: Engine, command: Command,
                  environment: str) -> str:
    """`/diff <model> [--columns a,b] [--where "..."] [--limit N]`: the plan's view of the model
    (its head against production) and, when both sides are built, its data diff."""
    text = command.args[0].lower()
    name, _ = resolve_target(project, text)
    plan = plan_environment(project, state, environment, against=PRODUCTION)
    node = plan.node(name)
    if node.change is Change.UNCHANGED:
        return f"`/diff {name}`: unchanged in this merge request (same fingerprint as production's)."
    if node.change is Change.ADDED:
        return f"`/diff {name}`: new — production has no version of it yet."
    lines = [f"**`{name}`**: {node.change.value}" + (f", {node.category}" if node.category else ""),
             f"- action: {node.action.value}" + (f" ({node.reason})" if node.reason else "")]
    for label, columns in (("added", node.columns.added), ("removed", node.columns.removed),
                           ("changed", node.columns.changed)):
        if columns:
            shown = "every column" if ALL in columns else ", ".join(f"`{c}`" for c in sorted(columns))
            lines.append(f"- columns {label}: {shown}")
    if node.affects:
        lines.append("- changes the data of: " + ", ".join(f"`{a}`" for a in node.affects))
    if state.environment(environment) is None or state.environment(PRODUCTION) is None:
        return "\n".join(lines)
    column_option = command.option("columns")
    wanted = [c.strip().lower() for c in column_option.split(",")] if column_option else None
    limit = command.option("limit")
    comparisons = compare(project, state, engine, PRODUCTION, environment, name, columns=wanted,
                          where=command.option("where"), samples=int(limit) if limit else None)
    for item in comparisons:
        if item.diff is not None:
            lines += ["", render_data_diff(name, item.diff, item.pii, command.option("where")).rstrip()]
    return "\n".join(lines)


def describe_lineage(project: Project, text: str) -> str:
    """Upstream and downstream of a model or one column: a Mermaid graph and lists."""
    name, column = resolve_target(project, text)
    found = trace(project, name, column)
    title = f"{name}.{column}" if column else name
    if column is None:
        nodes = sorted({name, *found.upstream_models, *found.downstream_models})
    else:  # only the models the column's values pass through
        nodes = sorted({name, *(m for m, _ in found.upstream), *(m for m, _ in found.downstream)})
    lines = [f"**Lineage of `{title}`**", "", "```mermaid", "flowchart LR"]
    for node in nodes:
        style = ":::focus" if node == name else ""
        lines.append(f'  {_id(node)}["{node}"]{style}')
    for node in nodes:
        for parent in project.dag.parents.get(node, ()):
            if parent in nodes:
                lines.append(f"  {_id(parent)} --> {_id(node)}")
        model = project.models.get(node)
        for ref in model.refs if model is not None else ():
            source = project.resolve(ref.parts)
            if source in project.sources and source in nodes:
                lines.append(f"  {_id(source)} --> {_id(node)}")
    lines += ["  classDef focus fill:#fde68a,stroke:#b45309,color:#111", "```", ""]
    if column is None:
        lines.append(f"- upstream: {_names(found.upstream_models)}")
        lines.append(f"- downstream: {_names(found.downstream_models)}")
    else:
        lines.append(f"- `{title}` comes from: {_columns(found.upstream)}")
        lines.append(f"- `{title}` reaches: {_columns(found.downstream)}")
    return "\n".join(lines)


def _names(names: tuple[str, ...]) -> str:
    return ", ".join(f"`{n}`" for n in names) or "nothing"


def _columns(refs: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"`{m}.{c}`" if c != ALL else f"`{m}` (all columns)" for m, c in refs) or "nothing"


def _id(name: str) -> str:
    return name.replace(".", "_")
