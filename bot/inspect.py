"""Answers to `/diff` and `/lineage` (and their command-line twins): one model's change and its
place in the graph, as Markdown. The data diff in the warehouse comes with the MR report work."""

from __future__ import annotations

from runner.lineage import ALL, model_lineage
from runner.plan import Change, Plan
from runner.project import Project


def _resolve(project: Project, text: str) -> tuple[str | None, str | None]:
    """`schema.model[.column]` or `model[.column]` -> (model name, column)."""
    parts = tuple(text.split("."))
    for split in (2, 1):
        name = project.resolve(parts[:split])
        if name is not None and name in (project.models.keys() | project.seeds.keys()):
            rest = parts[split:]
            return name, rest[0] if rest else None
    return None, None


def describe_diff(project: Project, plan: Plan, text: str) -> str:
    name, _ = _resolve(project, text)
    if name is None:
        return f"`/diff {text}`: no model or seed of that name in this merge request."
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
    return "\n".join(lines)


def describe_lineage(project: Project, text: str) -> str:
    name, column = _resolve(project, text)
    if name is None:
        return f"`/lineage {text}`: no model or seed of that name."
    upstream = sorted(project.dag.upstream([name]))
    downstream = sorted(project.dag.downstream([name]))
    lines = [f"**Lineage of `{name}{'.' + column if column else ''}`**", "", "```mermaid", "flowchart LR"]
    for node in sorted({name, *upstream, *downstream}):
        for parent in project.dag.parents.get(node, ()):
            lines.append(f"  {_id(parent)}[{parent}] --> {_id(node)}[{node}]")
    lines += ["```", "", f"- upstream: {', '.join(f'`{u}`' for u in upstream) or 'none'}",
              f"- downstream: {', '.join(f'`{d}`' for d in downstream) or 'none'}"]
    if column and name in project.models:
        readers = _column_readers(project, name, column, downstream)
        lines.append(f"- reads `{column}`: {', '.join(f'`{r}`' for r in readers) or 'no downstream model'}")
    return "\n".join(lines)


def _column_readers(project: Project, name: str, column: str, downstream: list[str]) -> list[str]:
    readers = []
    for child in downstream:
        model = project.models.get(child)
        if model is None or name not in model.depends_on:
            continue
        upstream = {dep: None for dep in model.depends_on}
        lineage = model_lineage(model.canonical, project.config.dialect, project.resolve, upstream)
        reads = lineage.reads_of(name)
        if column in reads or ALL in reads:
            readers.append(child)
    return readers


def _id(name: str) -> str:
    return name.replace(".", "_")
