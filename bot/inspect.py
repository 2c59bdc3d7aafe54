"""Answers to `/diff` and `/lineage` (and their command-line twins): one model's change and its
place in the graph, as Markdown. The data diff in the warehouse comes with the MR report work."""

from __future__ import annotations

from runner.lineage import ALL
from runner.plan import Change, Plan
from runner.project import Project
from runner.trace import resolve_target, trace


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
