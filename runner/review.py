"""Everything a reviewer reads about a run, computed by the runner: per model the semantic SQL
diff, the column changes, the schema and data diff against production (in the warehouse), and the
downstream impact. The bot renders it; the command line prints it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runner.categorize import ColumnChange
from runner.config import DiffSettings
from runner.engines.base import Engine
from runner.errors import SluiceError
from runner.impact import Impact, impact
from runner.naming import table
from runner.plan import Action, Change, Plan, PlannedNode
from runner.project import Project
from runner.sqldiff import SqlDiff, sql_diff
from runner.state import SnapshotRecord, StateStore

if TYPE_CHECKING:
    from runner.datadiff import DataDiff


@dataclass(frozen=True)
class ModelReview:
    name: str
    change: Change
    category: str
    columns: ColumnChange
    sql: SqlDiff | None = None
    data: DataDiff | None = None
    data_note: str = ""  # why there is no data diff, or what went wrong computing it
    pii: frozenset[str] = frozenset()  # columns masked in samples


@dataclass(frozen=True)
class Review:
    models: tuple[ModelReview, ...]
    impact: Impact
    skipped_diffs: int = 0  # models over the per-report cap
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def model(self, name: str) -> ModelReview | None:
        return next((m for m in self.models if m.name == name), None)


def unique_key(project: Project, name: str) -> tuple[str, ...]:
    """The model's `unique_key`, else the column of its first `unique` test."""
    model = project.models.get(name)
    if model is not None and model.unique_key:
        return model.unique_key
    for test in project.tests:
        if test.kind == "unique" and test.model == name and test.column:
            return (test.column,)
    return ()


def pii_columns(project: Project, name: str) -> set[str]:
    model = project.models.get(name)
    return {c.name for c in model.columns if "pii" in c.tags} if model is not None else set()


def review(plan: Plan, project: Project, state: StateStore, engine: Engine | None,
           data_changed: set[str] | None = None) -> Review:
    """`engine` None: no data diffs (a dry run); `data_changed`: the models built this run."""
    started = time.perf_counter()
    settings = project.config.diff
    previous = state.snapshots(fingerprints=[n.previous for n in plan.nodes if n.previous])
    reviews: list[ModelReview] = []
    diffs_done = skipped = 0
    for node in _ordered(plan):
        before = previous.get(node.previous) if node.previous else None
        sql = None
        if node.change is Change.DIRECT and node.kind == "model" and before is not None:
            sql = sql_diff(node.name, before.canonical, project.models[node.name].canonical,
                           project.config.dialect)
        data, note = None, ""
        wants_data = (node.change in (Change.DIRECT, Change.INDIRECT) and node.action is not Action.DROP
                      and (node.action is Action.BUILD or node.reused_from is None)
                      and before is not None and before.physical != node.physical)
        if wants_data and engine is not None:
            if diffs_done >= settings.max_models:
                skipped += 1
                note = "not diffed: over the report's cap of models (diff.max_models)"
            else:
                assert before is not None
                data, note = _data_diff(engine, project, node, before, settings)
                diffs_done += 1
        elif node.change is Change.ADDED:
            note = "new: nothing in production to compare with"
        reviews.append(ModelReview(node.name, node.change, node.category, node.columns, sql, data, note,
                                   frozenset(pii_columns(project, node.name))))
    return Review(tuple(reviews), impact(plan, project), skipped, time.perf_counter() - started)


def _ordered(plan: Plan) -> list[PlannedNode]:
    """Directly modified first, then added and removed, then what they change downstream."""
    order = {Change.DIRECT: 0, Change.ADDED: 1, Change.REMOVED: 2, Change.INDIRECT: 3}
    changed = [n for n in plan.nodes if n.change in order]
    return sorted(changed, key=lambda n: (order[n.change], n.name))


def _data_diff(engine: Engine, project: Project, node: PlannedNode, before: SnapshotRecord,
               settings: DiffSettings) -> tuple[DataDiff | None, str]:
    from runner.datadiff import DiffCaps, diff_relations

    caps = DiffCaps(max_rows=settings.max_rows, seconds=settings.seconds, samples=settings.samples)
    try:
        diff = diff_relations(engine, table(before.physical_schema, before.physical_table),
                              table(node.physical_schema, node.physical_table),
                              key=unique_key(project, node.name), pii=pii_columns(project, node.name),
                              caps=caps)
    except SluiceError as exc:
        return None, f"data diff failed: {exc}"
    return diff, ""
