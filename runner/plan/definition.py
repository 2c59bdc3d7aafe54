"""The plan value: what a project at a commit changes in an environment, node by node, and what
carrying it out builds or reuses. `builder.make_plan` makes it; the pipeline carries it out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from runner.plan.categorize import ColumnChange


class Change(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    DIRECT = "directly modified"
    INDIRECT = "indirectly modified"
    UNCHANGED = "unchanged"


class Action(StrEnum):
    BUILD = "build"  # a new physical table (or view) is created
    REUSE = "reuse"  # an existing physical object is used as it is: zero copy
    DROP = "drop"  # the model left the project: its view leaves the environment


@dataclass(frozen=True)
class PlannedNode:
    name: str
    kind: str  # "model" | "seed"
    change: Change
    action: Action
    fingerprint: str
    data_version: str
    physical_schema: str
    physical_table: str
    materialized: str
    parents: Mapping[str, str]
    columns: ColumnChange = field(default_factory=ColumnChange)
    outputs: tuple[str, ...] | None = None
    previous: str | None = None  # the fingerprint it replaces in the environment
    reused_from: str | None = None  # set when an unaffected model keeps an older physical object
    reason: str = ""
    affects: tuple[str, ...] = ()  # direct changes: downstream models whose data it changes

    @property
    def physical(self) -> str:
        return f"{self.physical_schema}.{self.physical_table}"

    @property
    def category(self) -> str:
        """Breaking or non-breaking, in the words a reviewer expects."""
        if self.change is not Change.DIRECT:
            return ""
        if self.columns.everything:
            return "breaking"
        readers = self.columns.for_readers()
        if readers:
            cols = ", ".join(sorted(readers))
            return f"breaking ({cols})" if self.affects else f"non-breaking (nothing downstream reads {cols})"
        return "non-breaking"


@dataclass(frozen=True)
class Plan:
    environment: str
    base: str | None  # the environment the plan compares with (itself, or production when new)
    nodes: tuple[PlannedNode, ...]  # in build order; removed nodes last
    dialect: str
    current: Mapping[str, str] = field(default_factory=dict)  # the environment's mapping today
    # model -> data version the environment shows today (production's, for a new environment)
    reference_versions: Mapping[str, str] = field(default_factory=dict)

    @property
    def mapping(self) -> dict[str, str]:
        """Model or seed -> fingerprint, once the plan is applied."""
        return {n.name: n.fingerprint for n in self.nodes if n.action is not Action.DROP}

    @property
    def to_build(self) -> list[PlannedNode]:
        return [n for n in self.nodes if n.action is Action.BUILD]

    @property
    def changed(self) -> list[PlannedNode]:
        return [n for n in self.nodes if n.change is not Change.UNCHANGED]

    @property
    def data_changed(self) -> set[str]:
        """Models and seeds whose data differs from what the environment shows today: what tests
        must check before the environment moves (rebuilt now or earlier, by another plan)."""
        return {n.name for n in self.nodes if n.action is not Action.DROP
                and self.reference_versions.get(n.name) != n.data_version}

    @property
    def is_noop(self) -> bool:
        return not self.to_build and self.mapping == dict(self.current) and not self.changed

    def node(self, name: str) -> PlannedNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)
