"""Build the snapshots a plan needs, independent ones at the same time, and record each in state.

Each object is created under a temporary name and renamed in one transaction (see
`Engine.build`), and recorded in the state store only once it exists, so a crash never leaves a
half-built table under a snapshot's name nor a record of a table that is not there.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import ParseError

from runner.engines.base import Engine
from runner.errors import BuildError, WarehouseError
from runner.naming import table
from runner.plan.definition import Action, Plan, PlannedNode
from runner.project.nodes import Project
from runner.rewrite import physical_query, physical_reads
from runner.state.records import SnapshotRecord
from runner.state.store import StateStore


@dataclass
class BuildResult:
    built: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # name -> error message
    transient: set[str] = field(default_factory=set)  # failed because the connection was lost
    skipped: list[str] = field(default_factory=list)  # not built because an upstream failed
    seconds: dict[str, float] = field(default_factory=dict)
    finished: dict[str, float] = field(default_factory=dict)  # name -> when its build ended (epoch)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.skipped


Progress = Callable[[PlannedNode, str], None]  # (node, "start" | "done" | "failed" | "skipped")


def build(plan: Plan, project: Project, engine: Engine, state: StateStore, threads: int = 4,
          progress: Progress | None = None) -> BuildResult:
    physical = {n.name: (n.physical_schema, n.physical_table) for n in plan.nodes
                if n.action is not Action.DROP}
    result = BuildResult()
    _record_zero_copy(plan, state)
    todo = {n.name: n for n in plan.to_build}
    if not todo:
        return result
    engine.ensure_schemas({n.physical_schema for n in todo.values()})
    # The build role may create in Sluice's schemas and read them and the declared sources only.
    engine.grant_reads({schema for schema, _ in physical.values()},
                       [table(*name.split(".", 1)) for name in sorted(project.sources)])
    sources = SourceStates(engine)
    waiting = {name: {p for p in project.dag.parents.get(name, ()) if p in todo} for name in todo}
    failed: set[str] = set()
    running: dict[Future[float], PlannedNode] = {}

    def start_ready(pool: ThreadPoolExecutor) -> None:
        for name in [n for n, deps in waiting.items() if not deps]:
            del waiting[name]
            node = todo[name]
            if progress:
                progress(node, "start")
            running[pool.submit(_build_one, node, project, engine, state, physical, sources)] = node

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="sluice-build") as pool:
        start_ready(pool)
        while running:
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                node = running.pop(future)
                try:
                    result.seconds[node.name] = future.result()
                    result.finished[node.name] = time.time()
                    result.built.append(node.name)
                    if progress:
                        progress(node, "done")
                except BuildError as exc:
                    result.failed[node.name] = str(exc)
                    if exc.transient:
                        result.transient.add(node.name)
                    failed.add(node.name)
                    if progress:
                        progress(node, "failed")
                for deps in waiting.values():
                    deps.discard(node.name)
            # Anything downstream of a failure is skipped, not attempted.
            for name in list(waiting):
                if project.dag.upstream([name]) & failed:
                    del waiting[name]
                    result.skipped.append(name)
                    failed.add(name)
                    if progress:
                        progress(todo[name], "skipped")
            start_ready(pool)
    return result


class SourceStates:
    """Each source's state, read once per build run (the report's drift check compares them)."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.states: dict[str, str | None] = {}
        self.lock = threading.Lock()

    def of(self, names: Iterable[str]) -> dict[str, str]:
        found = {}
        for name in names:
            with self.lock:
                if name not in self.states:
                    try:
                        self.states[name] = self.engine.relation_state(table(*name.split(".", 1)))
                    except WarehouseError:
                        self.states[name] = None
                state = self.states[name]
            if state is not None:
                found[name] = state
        return found


def typed_seed(rows: exp.Query, columns: tuple[str, ...], column_types: tuple[tuple[str, str], ...],
               dialect: str) -> exp.Query:
    """A seed's rows with the types its config names (dbt's `column_types`), the rest as inferred."""
    try:
        types = {name: exp.DataType.build(kind, dialect=dialect) for name, kind in column_types}
    except (ValueError, ParseError) as exc:
        raise WarehouseError(f"a seed's column_types names an unknown type: {exc}") from None
    unknown = sorted(set(types) - set(columns))
    if unknown:
        raise WarehouseError(f"column_types names {', '.join(unknown)}, not in the seed's header")
    return exp.select(*[
        exp.alias_(exp.cast(exp.column(name, quoted=True), types[name]), name, quoted=True)
        if name in types else exp.column(name, quoted=True) for name in columns
    ]).from_(rows.subquery("seed_rows"))


def direct_sources(project: Project, name: str) -> set[str]:
    model = project.models.get(name)
    if model is None:
        return set()
    return {s for s in (project.resolve(ref.parts) for ref in model.refs) if s in project.sources}


def _build_one(node: PlannedNode, project: Project, engine: Engine, state: StateStore,
               physical: dict[str, tuple[str, str]], sources: SourceStates) -> float:
    started = time.perf_counter()
    target = table(node.physical_schema, node.physical_table)
    try:
        if node.kind == "seed":
            seed = project.seeds[node.name]
            if seed.column_types:
                with engine.readable(project.root / seed.path) as path:
                    rows = engine.load_csv_sql(target, path)
                    engine.build(target, typed_seed(rows, seed.columns, seed.column_types, engine.dialect),
                                 "table")
            else:
                engine.load_seed(target, project.root / seed.path)
            canonical, reads = seed.content_hash, tuple[str, ...]()
        else:
            model = project.models[node.name]
            query = physical_query(model.canonical, project.config.dialect, project.resolve, physical)
            canonical = model.canonical
            reads = physical_reads(query)
            engine.build(target, query, node.materialized)
    except WarehouseError as exc:
        where = project.models[node.name].path if node.kind == "model" else project.seeds[node.name].path
        raise BuildError(f"{node.name} failed to build: {exc.message}", file=where,
                         transient=exc.transient) from None
    columns = tuple(engine.columns(target))
    seconds = time.perf_counter() - started
    state.add_snapshot(SnapshotRecord(
        fingerprint=node.fingerprint, name=node.name, kind=node.kind,
        physical_schema=node.physical_schema, physical_table=node.physical_table,
        materialized=node.materialized, data_version=node.data_version, canonical=canonical,
        parents=node.parents, columns=columns, reads_physical=reads, build_seconds=seconds))
    state.record_source_states(node.fingerprint, sources.of(direct_sources(project, node.name)))
    return seconds


def _record_zero_copy(plan: Plan, state: StateStore) -> None:
    """An unaffected model keeps an older physical object under its new fingerprint."""
    known = state.snapshots(fingerprints=[n.fingerprint for n in plan.nodes if n.reused_from])
    originals = state.snapshots(fingerprints=[n.reused_from for n in plan.nodes if n.reused_from])
    for node in plan.nodes:
        if node.action is not Action.REUSE or not node.reused_from or node.fingerprint in known:
            continue
        original = originals.get(node.reused_from)
        state.add_snapshot(SnapshotRecord(
            fingerprint=node.fingerprint, name=node.name, kind=node.kind,
            physical_schema=node.physical_schema, physical_table=node.physical_table,
            materialized=node.materialized, data_version=node.data_version,
            canonical=original.canonical if original else "", parents=node.parents,
            columns=node.outputs or (), reads_physical=original.reads_physical if original else (),
            reused_from=node.reused_from))


