"""Plan a project against an environment: what changed, what it breaks, what to build or reuse.

A pure function of the project on disk and the state it is compared with (the environment's
current snapshots, or production's for a new environment, and every snapshot already built). No
warehouse, no network: the plan can be shown before anything runs.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace

from runner.errors import PlanError
from runner.lineage.model import ALL, ColumnLineage, model_lineage
from runner.naming import physical_name, physical_schema
from runner.plan.categorize import EVERYTHING, ColumnChange, categorize
from runner.plan.definition import Action, Change, Plan, PlannedNode
from runner.plan.fingerprint import model_fingerprint, seed_fingerprint, source_version
from runner.project.nodes import Project
from runner.state.records import SnapshotRecord


def make_plan(project: Project, environment: str, base_name: str | None,
              base: Mapping[str, SnapshotRecord], known: Mapping[str, SnapshotRecord],
              current: Mapping[str, str] | None = None,
              reference_versions: Mapping[str, str] | None = None, namespace: str = "",
              selected: Collection[str] | None = None) -> Plan:
    """`base`: model -> snapshot the comparison starts from; `known`: every live snapshot by
    fingerprint; `current`: the environment's mapping today (empty for a new environment);
    `reference_versions`: the data versions the environment shows today; `namespace`: the
    repository's, which new physical objects' schemas carry; `selected`: the nodes the plan may
    change (a selector's), the others keep the base's snapshots as dbt's `--defer` would read
    them; new ones the selection reads are planned too, the other new ones left out."""
    planner = _Planner(project, base, known, namespace)
    wanted = None if selected is None else _needed(project, set(selected), base)
    nodes: list[PlannedNode] = []
    for name in project.dag.order:
        if wanted is None or name in wanted:
            nodes.append(planner.plan_node(name))
        elif name in base:
            nodes.append(planner.keep(name, base[name], base_name))
    planner.fill_affects(nodes)
    nodes = [planner.with_affects(n) for n in nodes]
    for name, record in sorted(base.items()):
        if name not in planner.planned and wanted is not None:
            nodes.append(planner.keep(name, record, base_name))
        elif name not in planner.planned:
            nodes.append(PlannedNode(
                name=name, kind=record.kind, change=Change.REMOVED, action=Action.DROP,
                fingerprint=record.fingerprint, data_version=record.data_version,
                physical_schema=record.physical_schema, physical_table=record.physical_table,
                materialized=record.materialized, parents=record.parents, previous=record.fingerprint,
                reason="no longer in the project"))
    return Plan(environment=environment, base=base_name, nodes=tuple(nodes),
                dialect=project.config.dialect, current=dict(current or {}),
                reference_versions=dict(reference_versions or {}))


def _needed(project: Project, selected: set[str], base: Mapping[str, SnapshotRecord]) -> set[str]:
    """The selection, and what it reads that the base does not have yet."""
    needed = set(selected)
    stack = list(selected)
    while stack:
        for parent in project.dag.parents.get(stack.pop(), ()):
            if parent not in base and parent not in needed:
                needed.add(parent)
                stack.append(parent)
    return needed


class _Planner:
    def __init__(self, project: Project, base: Mapping[str, SnapshotRecord],
                 known: Mapping[str, SnapshotRecord], namespace: str = ""):
        self.project = project
        self.namespace = namespace
        self.base = base
        self.known = known
        self.planned: dict[str, PlannedNode] = {}
        self.lineages: dict[str, ColumnLineage] = {}
        self.affects: dict[str, set[str]] = {}

    # -- columns ---------------------------------------------------------------------------------

    def outputs(self, name: str) -> tuple[str, ...] | None:
        if name in self.project.seeds:
            return self.project.seeds[name].columns
        if name in self.project.sources:
            return self.project.sources[name].columns
        node = self.planned.get(name)
        if node is not None and node.outputs:
            return node.outputs
        return self.lineage(name).outputs

    def upstream_columns(self, name: str) -> dict[str, tuple[str, ...] | None]:
        """The columns of what a model reads, as far as they are known before the warehouse."""
        model = self.project.models[name]
        upstream = {ref: self.outputs(ref) for ref in model.depends_on}
        for source in self.project.sources.values():
            upstream[source.name] = source.columns
        return upstream

    def lineage(self, name: str) -> ColumnLineage:
        if name not in self.lineages:
            model = self.project.models[name]
            self.lineages[name] = model_lineage(model.canonical, self.project.config.dialect,
                                                self.project.resolve, self.upstream_columns(name))
        return self.lineages[name]

    # -- one node ---------------------------------------------------------------------------------

    def plan_node(self, name: str) -> PlannedNode:
        node = self._seed(name) if name in self.project.seeds else self._model(name)
        self.planned[name] = node
        return node

    def _seed(self, name: str) -> PlannedNode:
        seed = self.project.seeds[name]
        fingerprint = seed_fingerprint(seed)
        base = self.base.get(name)
        if base is None:
            change, columns = Change.ADDED, EVERYTHING
        elif base.fingerprint == fingerprint:
            change, columns = Change.UNCHANGED, ColumnChange()
        else:
            change, columns = Change.DIRECT, EVERYTHING
        return self._decide(name, "seed", change, columns, fingerprint, {}, "table", seed.columns,
                            base, "")

    def _model(self, name: str) -> PlannedNode:
        model = self.project.models[name]
        parents = {dep: self.planned[dep].data_version for dep in model.depends_on}
        for ref in model.refs:
            resolved = self.project.resolve(ref.parts)
            if resolved in self.project.sources:
                parents[resolved] = source_version(resolved)
        fingerprint = model_fingerprint(model, parents)
        base = self.base.get(name)
        reason = ""
        if base is None:
            change, columns = Change.ADDED, EVERYTHING
        elif base.fingerprint == fingerprint:
            change, columns = Change.UNCHANGED, ColumnChange()
        else:
            columns, reason = self._upstream_effect(name, parents, base)
            if base.canonical != model.canonical or base.materialized != model.materialized:
                change = Change.DIRECT
                direct = categorize(base.canonical, model.canonical, self.project.config.dialect,
                                    base.columns or None, self.lineage(name).outputs,
                                    self.project.resolve, self.upstream_columns(name))
                if base.materialized != model.materialized and direct.is_empty:
                    direct = ColumnChange()  # same data, stored differently: rebuilt, not breaking
                columns = direct.union(columns)
                reason = ""
            else:
                change = Change.INDIRECT
        # Output columns only when lineage was needed anyway: tracing every new model would cost
        # seconds on a large project; the warehouse reports the real columns after the build.
        outputs = self.lineages[name].outputs or None if name in self.lineages else None
        return self._decide(name, "model", change, columns, fingerprint, parents, model.materialized,
                            outputs, base, reason)

    def _upstream_effect(self, name: str, parents: Mapping[str, str],
                         base: SnapshotRecord) -> tuple[ColumnChange, str]:
        """How the upstream changes reach this model's columns; and, when they do not, why."""
        model = self.project.models[name]
        changed: dict[str, ColumnChange] = {}
        for dep, version in parents.items():
            if base.parents.get(dep) == version:
                continue
            upstream = self.planned.get(dep)
            same_start = (upstream is not None and dep in self.base
                          and self.base[dep].data_version == base.parents.get(dep))
            changed[dep] = upstream.columns if upstream is not None and same_start else EVERYTHING
        if not changed:
            return ColumnChange(), ""
        lineage = self.lineage(name)
        for dep, change in changed.items():
            removed = sorted(lineage.reads_of(dep) & change.removed)
            if removed:
                line = next((ref.line for ref in model.refs if self.project.resolve(ref.parts) == dep), None)
                raise PlanError(
                    f"model {name} reads {', '.join(f'{dep}.{c}' for c in removed)}, which the change "
                    f"to {dep} removes; update {name} in the same change or keep the column",
                    file=model.path, line=line)
        readers = {dep: change.for_readers() for dep, change in changed.items()}
        affected = lineage.affected_outputs(readers)
        star_added = any(change.added for dep, change in changed.items() if dep in lineage.star_tables)
        effect = ColumnChange(changed=frozenset(affected),
                              added=frozenset({ALL}) if star_added else frozenset())
        for dep, change in changed.items():
            if not change.is_empty and (affected or star_added):
                self.affects.setdefault(dep, set()).add(name)
        if effect.is_empty:
            cols = sorted({c for change in readers.values() for c in change})
            if cols:
                return effect, f"reads none of the changed columns: {', '.join(cols)}"
            added = sorted({c for change in changed.values() for c in change.added if c != ALL})
            return effect, f"upstream only added columns ({', '.join(added)}); it selects none of them"
        read = sorted(f"{dep}.{col}" for dep, cols in readers.items()
                      for col in (lineage.reads_of(dep) if ALL in cols else lineage.reads_of(dep) & cols))
        if read:
            more = " …" if len(read) > 6 else ""
            return effect, f"reads changed columns: {', '.join(read[:6])}{more}"
        return effect, "selects * from a model that gained columns" if star_added else ""

    def _decide(self, name: str, kind: str, change: Change, columns: ColumnChange, fingerprint: str,
                parents: Mapping[str, str], materialized: str, outputs: tuple[str, ...] | None,
                base: SnapshotRecord | None, reason: str) -> PlannedNode:
        existing = self.known.get(fingerprint)
        if existing is not None:
            action, version, where, reused_from = (Action.REUSE, existing.data_version, existing,
                                                   existing.reused_from)
            outputs = existing.columns or outputs
            reason = reason or ("already built" if change is not Change.UNCHANGED else "")
        elif change is Change.INDIRECT and columns.is_empty and base is not None:
            action, version, where, reused_from = (Action.REUSE, base.data_version, base,
                                                   base.fingerprint)
            outputs = base.columns or outputs
        else:
            action, version, where, reused_from = Action.BUILD, fingerprint, None, None
        schema, table = name.split(".", 1)
        return PlannedNode(
            name=name, kind=kind, change=change, action=action, fingerprint=fingerprint,
            data_version=version,
            physical_schema=where.physical_schema if where else physical_schema(schema, self.namespace),
            physical_table=where.physical_table if where else physical_name(table, fingerprint),
            materialized=materialized, parents=parents, columns=columns, outputs=outputs,
            previous=base.fingerprint if base else None, reused_from=reused_from, reason=reason)

    def keep(self, name: str, record: SnapshotRecord, base_name: str | None) -> PlannedNode:
        """A node outside the selection: the environment shows the base's snapshot of it."""
        node = PlannedNode(
            name=name, kind=record.kind, change=Change.UNCHANGED, action=Action.REUSE,
            fingerprint=record.fingerprint, data_version=record.data_version,
            physical_schema=record.physical_schema, physical_table=record.physical_table,
            materialized=record.materialized, parents=record.parents,
            outputs=record.columns or None, previous=record.fingerprint,
            reused_from=record.reused_from, reason=f"not selected: as in {base_name or 'the base'}")
        self.planned[name] = node
        return node

    # -- who is affected by a direct change -------------------------------------------------------

    def fill_affects(self, nodes: list[PlannedNode]) -> None:
        for node in nodes:
            if node.change is Change.DIRECT and node.columns.everything:
                children = self.project.dag.children.get(node.name, ())
                self.affects.setdefault(node.name, set()).update(children)

    def with_affects(self, node: PlannedNode) -> PlannedNode:
        if node.change is not Change.DIRECT:
            return node
        affects = tuple(sorted(self.affects.get(node.name, ())))
        return replace(node, affects=affects)
