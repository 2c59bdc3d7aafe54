"""Column lineage across the whole project: where a model's column comes from (upstream, to
seeds and sources) and which columns of which models it reaches (downstream), through CTEs,
joins, aggregates, window functions, unions and `*`."""

from __future__ import annotations

from dataclasses import dataclass

from runner.errors import SluiceError
from runner.lineage.model import ALL, ColumnLineage, model_lineage
from runner.project.nodes import Project


@dataclass(frozen=True)
class Trace:
    model: str
    column: str | None
    upstream: tuple[tuple[str, str], ...]  # (model/seed/source, column); column "*" = every column
    downstream: tuple[tuple[str, str], ...]
    upstream_models: tuple[str, ...]
    downstream_models: tuple[str, ...]


class Lineages:
    """Every model's column lineage, computed once in build order (outputs feed `*` expansion)."""

    def __init__(self, project: Project):
        self.project = project
        self._lineage: dict[str, ColumnLineage] = {}
        self._outputs: dict[str, tuple[str, ...] | None] = {}
        for name, seed in project.seeds.items():
            self._outputs[name] = seed.columns
        for name, source in project.sources.items():
            self._outputs[name] = source.columns

    def of(self, name: str) -> ColumnLineage:
        if name not in self._lineage:
            model = self.project.models[name]
            upstream = {dep: self.outputs(dep) for dep in model.depends_on}
            upstream.update({s: self._outputs.get(s) for s in self.project.sources})
            self._lineage[name] = model_lineage(model.canonical, self.project.config.dialect,
                                                self.project.resolve, upstream)
        return self._lineage[name]

    def outputs(self, name: str) -> tuple[str, ...] | None:
        """Output columns of a model, seed or source (None: not known without the warehouse)."""
        if name not in self._outputs:
            self._outputs[name] = self.of(name).outputs if name in self.project.models else None
        return self._outputs[name]


def resolve_target(project: Project, text: str) -> tuple[str, str | None]:
    """`schema.model[.column]` or `model[.column]` -> (node name, column)."""
    parts = tuple(text.lower().split("."))
    known = project.models.keys() | project.seeds.keys() | project.sources.keys()
    for split in (2, 1):
        name = project.resolve(parts[:split])
        if name is not None and name in known and len(parts) - split <= 1:
            rest = parts[split:]
            return name, rest[0] if rest else None
    raise SluiceError(f"{text!r} is not a model, seed or source of this project (write schema.model "
                      "or schema.model.column)")


def trace(project: Project, name: str, column: str | None) -> Trace:
    lineages = Lineages(project)
    if column is not None:
        outputs = lineages.outputs(name)
        if outputs is not None and column not in outputs:
            raise SluiceError(f"{name} has no column {column!r} (it has: {', '.join(outputs)})")
    up_models = sorted(project.dag.upstream([name]) | _sources_read(project, name))
    down_models = sorted(project.dag.downstream([name]))
    if column is None:
        return Trace(name, None, (), (), tuple(up_models), tuple(down_models))
    return Trace(name, column, tuple(sorted(_upstream(lineages, name, column))),
                 tuple(sorted(downstream_columns(project, lineages, name, column))),
                 tuple(up_models), tuple(down_models))


def _sources_read(project: Project, name: str) -> set[str]:
    names = {name} | project.dag.upstream([name])
    found = set()
    for model_name in names:
        model = project.models.get(model_name)
        if model is None:
            continue
        for ref in model.refs:
            target = project.resolve(ref.parts)
            if target in project.sources:
                found.add(target)
    return found


def _upstream(lineages: Lineages, name: str, column: str) -> set[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    stack = [(name, column)]
    while stack:
        model, col = stack.pop()
        if model not in lineages.project.models:
            continue
        lineage = lineages.of(model)
        # A column depends on what it is computed from and on what decides its rows.
        refs = lineage.reads if col == ALL else lineage.columns.get(col, frozenset()) | lineage.rows
        for ref in refs:
            if ref not in seen:
                seen.add(ref)
                stack.append(ref)
    return seen


def downstream_columns(project: Project, lineages: Lineages, name: str,
                       column: str) -> set[tuple[str, str]]:
    """Every (model, column) whose values depend on `name.column`, transitively."""
    seen: set[tuple[str, str]] = set()
    frontier = {name: {column}}
    for child in [n for n in project.dag.order if n in project.dag.downstream([name])]:
        model = project.models.get(child)
        if model is None:
            continue
        changed = {dep: frozenset(frontier[dep]) for dep in model.depends_on if dep in frontier}
        if not changed:
            continue
        affected = lineages.of(child).affected_outputs(changed)
        if affected:
            frontier[child] = set(affected)
            seen.update((child, col) for col in affected)
    return seen
