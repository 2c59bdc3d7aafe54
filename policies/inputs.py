"""What the rules look at: plain frozen values the runner and the bot build from their own objects.

The policy engine never sees a `runner.project.Model` or a forge object; the caller adapts them into
these, so `policies` depends on nothing else in Sluice and every rule is a pure function.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ColumnFacts:
    name: str
    tags: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class ModelFacts:
    """One model as the policy sees it. `sql` is the model's query (canonical or as written)."""

    name: str  # schema.table
    schema: str
    table: str
    path: str  # relative to the project root
    sql: str
    dialect: str  # sqlglot's name for the SQL the model is written in
    materialized: str = "table"
    unique_key: tuple[str, ...] = ()
    has_unique_test: bool = False
    description: str = ""
    columns: tuple[ColumnFacts, ...] = ()
    reads: tuple[str, ...] = ()  # upstream models, seeds and sources, as schema.table
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectFacts:
    """All models of a project, plus what the caller worked out from column-level lineage."""

    models: tuple[ModelFacts, ...]
    # model name -> the tagged columns ("schema.table.column") whose data flows into it; see
    # `propagate_pii` to compute it from column lineage.
    pii_flows: Mapping[str, frozenset[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class CommandRequest:
    """Someone with `role` asks to run a slash command."""

    command: str  # "plan", "deploy", … as in bot.commands.NAMES
    environment: str | None
    role: int
    protected: bool = False  # the environment is protected (the caller decides, e.g. prod always)
    rule: str | None = None  # `/approve <rule>`: the rule to override
    own: bool = True  # the lock or environment belongs to the requester's merge request


@dataclass(frozen=True)
class Approval:
    """A plain approval of a merge request (`/approve` or the forge's own), at one commit."""

    by: str
    role: int
    sha: str
    at: datetime | None = None


@dataclass(frozen=True)
class Override:
    """`/approve <rule>`: someone accepts a rule's findings (all of them, or one subject's)."""

    rule: str
    by: str
    role: int
    sha: str
    subject: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class MergeRequestFacts:
    author: str
    author_role: int
    head_sha: str
    now: datetime  # aware; a naive time is taken as UTC
    from_fork: bool = False
    built_sha: str | None = None  # the commit the MR environment was built from
    approvals: tuple[Approval, ...] = ()
    overrides: tuple[Override, ...] = ()
    tests_passed: bool = False
    breaking: bool = False  # the plan holds a breaking change
    breaking_models: tuple[str, ...] = ()  # the models whose change is breaking
    blocking_failures: tuple[str, ...] = ()  # Evaluation.blocking_labels of the MR's last run


@dataclass(frozen=True)
class ConnectionFacts:
    """The warehouse connection a repository names, and those the server allows it ("*": any)."""

    requested: str
    allowed: tuple[str, ...]


def propagate_pii(tagged: Iterable[str],
                  downstream: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    """Which tagged columns reach each model, following column lineage edges.

    `tagged` are "schema.table.column" names carrying the PII tag; `downstream` maps a column to the
    columns computed from it. Returns model name -> the tagged columns that flow into it (a model's
    own tagged columns count too).
    """
    flows: dict[str, set[str]] = {}
    for origin in tagged:
        seen = {origin}
        frontier = [origin]
        while frontier:
            column = frontier.pop()
            flows.setdefault(column.rsplit(".", 1)[0], set()).add(origin)
            for nxt in downstream.get(column, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
    return {model: frozenset(origins) for model, origins in flows.items()}
