"""Everything a reviewer reads about a run, computed by the runner: per model the semantic SQL
diff, the column changes, the schema and data diff against production (in the warehouse), and the
downstream impact. The bot renders it; the command line prints it."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from runner.build import SourceStates, direct_sources
from runner.engines.base import Engine
from runner.errors import SluiceError
from runner.naming import physical_name, table
from runner.plan.categorize import ColumnChange
from runner.plan.definition import Action, Change, Plan, PlannedNode
from runner.project.config import DiffSettings
from runner.project.nodes import Project
from runner.review.impact import Impact, impact
from runner.review.sqldiff import SqlDiff, sql_diff
from runner.rewrite import physical_query
from runner.state.records import SnapshotRecord
from runner.state.store import StateStore

if TYPE_CHECKING:
    from runner.review.datadiff import DataDiff


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
    drift: tuple[str, ...] = ()  # sources read directly that changed since production's build
    baseline: str = "production"  # what the data diff compares with: production, or "rebuilt"


@dataclass(frozen=True)
class Review:
    models: tuple[ModelReview, ...]
    impact: Impact
    seconds: float = 0.0

    def model(self, name: str) -> ModelReview | None:
        return next((m for m in self.models if m.name == name), None)


BASELINE_MARK = "__baseline"


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
           budget: float | None = None) -> Review:
    """`engine` None: no data diffs (a dry run). `budget`: seconds for all the data diffs (the
    server's report_budget); once spent, the models left say they were skipped, and why."""
    started = time.perf_counter()
    settings = project.config.diff
    previous = state.snapshots(fingerprints=[n.previous for n in plan.nodes if n.previous])
    sources = SourceStates(engine) if engine is not None else None
    reviews: list[ModelReview] = []
    diffs_done = 0
    for node in _ordered(plan):
        before = previous.get(node.previous) if node.previous else None
        sql = None
        if node.change is Change.DIRECT and node.kind == "model" and before is not None:
            sql = sql_diff(node.name, before.canonical, project.models[node.name].canonical,
                           project.config.dialect)
        data, note, baseline = None, "", "production"
        drift: tuple[str, ...] = ()
        wants_data = (node.change in (Change.DIRECT, Change.INDIRECT) and node.action is not Action.DROP
                      and (node.action is Action.BUILD or node.reused_from is None)
                      and before is not None and before.physical != node.physical)
        left = None if budget is None else budget - (time.perf_counter() - started)
        if wants_data and engine is not None:
            if diffs_done >= settings.max_models:
                note = "not diffed: over the report's cap of models (diff.max_models)"
            elif left is not None and left <= 0:
                note = (f"not diffed: the report's time budget of {budget:g} s ran out (the server "
                        "setting report_budget raises it)")
            else:
                if left is not None and left < settings.seconds:
                    settings = replace(settings, seconds=max(left, 0.1))
                assert before is not None and sources is not None
                drift = _drift(state, sources, project, node.name, before)
                if drift and settings.baseline == "rebuild":
                    data, note = _diff_against_rebuilt(engine, project, state, node, before, settings)
                    baseline = "rebuilt"
                else:
                    data, note = _data_diff(engine, project, node, before, settings)
                diffs_done += 1
        elif node.change is Change.ADDED:
            note = "new: nothing in production to compare with"
        reviews.append(ModelReview(node.name, node.change, node.category, node.columns, sql, data, note,
                                   frozenset(pii_columns(project, node.name)), drift, baseline))
    return Review(tuple(reviews), impact(plan, project), time.perf_counter() - started)


def _ordered(plan: Plan) -> list[PlannedNode]:
    """Directly modified first, then added and removed, then what they change downstream."""
    order = {Change.DIRECT: 0, Change.ADDED: 1, Change.REMOVED: 2, Change.INDIRECT: 3}
    changed = [n for n in plan.nodes if n.change in order]
    return sorted(changed, key=lambda n: (order[n.change], n.name))


def _drift(state: StateStore, sources: SourceStates, project: Project, name: str,
           before: SnapshotRecord) -> tuple[str, ...]:
    """Sources the model reads directly whose contents changed since production's version of it
    was built: a plain diff would mix the change's effect with new data."""
    recorded = state.source_states(before.fingerprint)
    wanted = [s for s in sorted(direct_sources(project, name)) if s in recorded]
    now = sources.of(wanted)
    return tuple(s for s in wanted if s in now and now[s] != recorded[s])


def _diff_against_rebuilt(engine: Engine, project: Project, state: StateStore, node: PlannedNode,
                          before: SnapshotRecord, settings: DiffSettings) -> tuple[DataDiff | None, str]:
    """`diff: {baseline: rebuild}`: build production's version of the model again from today's
    sources (its other inputs as production had them), diff against that, then drop it."""
    upstream = state.snapshots(fingerprints=list(before.parents.values()))
    physical = {name: (upstream[version].physical_schema, upstream[version].physical_table)
                for name, version in before.parents.items() if version in upstream}
    name = node.name.split(".", 1)[1]
    baseline = replace(before, physical_schema=before.physical_schema,  # its namespace's
                       physical_table=f"{physical_name(name, before.fingerprint)}{BASELINE_MARK}")
    target = table(baseline.physical_schema, baseline.physical_table)
    query = physical_query(before.canonical, project.config.dialect, project.resolve, physical)
    try:
        engine.ensure_schemas({baseline.physical_schema})
        engine.build(target, query, "table")
    except SluiceError as exc:
        return None, f"could not rebuild production's version as a baseline: {exc}"
    try:
        return _data_diff(engine, project, node, baseline, settings)
    finally:
        with engine.transaction() as cursor:
            engine.drop(cursor, target, "table")


def _data_diff(engine: Engine, project: Project, node: PlannedNode, before: SnapshotRecord,
               settings: DiffSettings) -> tuple[DataDiff | None, str]:
    from runner.review.datadiff import DiffCaps, diff_relations

    caps = DiffCaps(max_rows=settings.max_rows, seconds=settings.seconds, samples=settings.samples)
    try:
        diff = diff_relations(engine, table(before.physical_schema, before.physical_table),
                              table(node.physical_schema, node.physical_table),
                              key=unique_key(project, node.name), pii=pii_columns(project, node.name),
                              caps=caps)
    except SluiceError as exc:
        return None, f"data diff failed: {exc}"
    return diff, ""
