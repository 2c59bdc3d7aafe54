"""What a plan does downstream, column by column: the models whose data it changes (and which
columns), the models provably unaffected and therefore reused, the exposures it reaches, and a
Mermaid flowchart of all of it. Pure: computed from the plan and the project."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runner.lineage.model import ALL
from runner.plan.definition import Action, Change, Plan
from runner.project.nodes import Exposure, Project


@dataclass(frozen=True)
class ImpactedModel:
    name: str
    columns: tuple[str, ...]  # ("*",): every column
    reason: str = ""


@dataclass(frozen=True)
class ExposureImpact:
    exposure: Exposure
    through: tuple[str, ...]  # the changed models it reads


@dataclass(frozen=True)
class Impact:
    modified: tuple[str, ...]  # directly modified, added or removed
    downstream: tuple[ImpactedModel, ...]  # data changes because of an upstream change
    unaffected: tuple[ImpactedModel, ...]  # downstream, provably unchanged: reused zero-copy
    exposures: tuple[ExposureImpact, ...]
    mermaid: str

    @property
    def is_empty(self) -> bool:
        return not (self.modified or self.downstream)


def impact(plan: Plan, project: Project) -> Impact:
    """A function of the plan against its base (production, for a merge request), never of what
    this run happened to build: a model whose new version an earlier run already built is just as
    changed as one built now."""
    modified = tuple(n.name for n in plan.nodes
                     if n.change in (Change.DIRECT, Change.ADDED, Change.REMOVED))
    changed = plan.data_changed
    downstream = tuple(
        ImpactedModel(n.name, _columns(n.columns.changed | n.columns.added), n.reason)
        for n in plan.nodes if n.change is Change.INDIRECT and n.name in changed)
    unaffected = tuple(
        ImpactedModel(n.name, (), n.reason)
        for n in plan.nodes if n.change is Change.INDIRECT and n.name not in changed
        and n.action is not Action.DROP)
    changed_data = set(modified) | {m.name for m in downstream}
    exposures = tuple(
        ExposureImpact(e, tuple(d for d in e.depends_on if d in changed_data))
        for e in project.exposures if any(d in changed_data for d in e.depends_on))
    return Impact(modified, downstream, unaffected, exposures,
                  _mermaid(plan, project, modified, downstream, unaffected, exposures))


def _columns(columns: frozenset[str]) -> tuple[str, ...]:
    return ("*",) if ALL in columns else tuple(sorted(columns))


MAX_GRAPH_NODES = 80

_CLASSES = """\
  classDef modified fill:#fde68a,stroke:#b45309,color:#111
  classDef breaking fill:#fecaca,stroke:#b91c1c,color:#111
  classDef reused fill:#d1fae5,stroke:#047857,color:#111
  classDef exposure fill:#e0e7ff,stroke:#4338ca,color:#111"""


def _mermaid(plan: Plan, project: Project, modified: tuple[str, ...],
             downstream: tuple[ImpactedModel, ...], unaffected: tuple[ImpactedModel, ...],
             exposures: tuple[ExposureImpact, ...]) -> str:
    if not modified or len(modified) + len(downstream) + len(unaffected) > MAX_GRAPH_NODES:
        return ""  # nobody reads a graph of hundreds of boxes; the lists say it all
    kinds = {name: "modified" for name in modified}
    labels = {name: _text(name) for name in modified}
    for item in downstream:
        kinds[item.name] = "breaking"
        cols = "all columns" if item.columns == ("*",) else _text(", ".join(item.columns[:4]))
        labels[item.name] = f"{_text(item.name)}<br/><i>{cols}</i>" if cols else _text(item.name)
    for item in unaffected:
        kinds[item.name] = "reused"
        labels[item.name] = f"{_text(item.name)}<br/><i>reused</i>"
    lines = ["flowchart LR"]
    for name in sorted(kinds):
        lines.append(f'  {_id(name)}["{labels[name]}"]:::{kinds[name]}')
    for name in sorted(kinds):
        for parent in project.dag.parents.get(name, ()):
            if parent in kinds:
                lines.append(f"  {_id(parent)} --> {_id(name)}")
    for reached in exposures:
        node = "x_" + _id(reached.exposure.name)
        label = f"{_text(reached.exposure.type)}: {_text(reached.exposure.name)}"
        lines.append(f'  {node}(["{label}"]):::exposure')
        for model in reached.through:
            lines.append(f"  {_id(model)} --> {node}")
    lines.append(_CLASSES)
    return "\n".join(lines)


def _id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def _text(text: str) -> str:
    """Safe inside a quoted Mermaid label (no quotes, brackets or HTML from names)."""
    return re.sub(r'["<>\[\]{}|`;]', "", text)
