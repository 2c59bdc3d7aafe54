"""Rules a policy file defines without Python, and rules installed as `sluice.policies` entry points.

A custom rule fires on a model when its `when` condition (if any) holds and, if it has SQL
conditions, when one of them finds something: `forbid` (a pattern, see `policies.sql`),
`forbid_functions`, `require_where_on`. With `when` alone, the condition holding is the finding.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from policies.expression import Condition, ExpressionError
from policies.findings import Finding, RuleSettings
from policies.rules.base import ModelRule, ModelView
from policies.sql import FunctionMatcher, compile_pattern, find_pattern, unfiltered_reads

if TYPE_CHECKING:
    from policies.policy import Policy

ENTRY_POINT_GROUP = "sluice.policies"

# What a `when:` condition may name.
METADATA_NAMES = ("name", "schema", "table", "path", "dialect", "materialized", "description",
                  "unique_key", "has_unique_test", "columns", "column_tags", "tags", "reads")


def metadata(view: ModelView) -> dict[str, Any]:
    facts = view.facts
    return {
        "name": facts.name, "schema": facts.schema, "table": facts.table, "path": facts.path,
        "dialect": facts.dialect, "materialized": facts.materialized, "description": facts.description,
        "unique_key": facts.unique_key, "has_unique_test": facts.has_unique_test,
        "columns": tuple(c.name for c in facts.columns),
        "column_tags": tuple(sorted({t for c in facts.columns for t in c.tags})),
        "tags": facts.tags, "reads": facts.reads,
    }


@dataclass(frozen=True)
class CustomRule:
    id: str
    message: str
    forbid: str | None = None
    forbid_functions: tuple[str, ...] = ()
    require_where_on: tuple[str, ...] = ()
    when: Condition | None = None

    @property
    def has_sql_conditions(self) -> bool:
        return bool(self.forbid or self.forbid_functions or self.require_where_on)

    def check(self, rule: RuleSettings, policy: Policy, view: ModelView) -> Iterator[Finding]:
        if self.when is not None:
            try:
                if not self.when.evaluate(metadata(view)):
                    return
            except ExpressionError as exc:
                yield view.finding(rule, f"custom rule {self.id}: {exc}")
                return
        if not self.has_sql_conditions:
            yield view.finding(rule, self.message)
            return
        query = view.query
        if query is None:
            return  # not one query: single-query reports it
        if self.forbid:
            try:
                pattern = compile_pattern(self.forbid, view.facts.dialect)
            except ValueError:
                pattern = compile_pattern(self.forbid, "")
            node = find_pattern(query, pattern)
            if node is not None:
                yield view.finding(rule, f"{self.message} (found `{_snippet(node.sql(view.facts.dialect))}`)",
                                   node)
        if self.forbid_functions:
            matcher = FunctionMatcher(self.forbid_functions, view.facts.dialect)
            for node in query.find_all(exp.Func):
                name = matcher.match(node)
                if name is not None:
                    yield view.finding(rule, f"{self.message} (calls {name}())", node)
                    break
        for name, table in unfiltered_reads(query, self.require_where_on):
            yield view.finding(rule, f"{self.message} (reads {name} without a WHERE clause)", table)
            break

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "message": self.message}
        if self.forbid:
            out["forbid"] = self.forbid
        if self.forbid_functions:
            out["forbid_functions"] = list(self.forbid_functions)
        if self.require_where_on:
            out["require_where_on"] = list(self.require_where_on)
        if self.when is not None:
            out["when"] = self.when.text
        return out


@dataclass(frozen=True)
class PythonRule:
    """A rule loaded from an entry point: `check(rule, policy, model)` yields findings."""

    id: str
    source: str  # the entry point's value, e.g. "acme_rules:no_cross_joins"
    check: ModelRule = field(compare=False, repr=False)
    defaults: Mapping[str, Any] = field(default_factory=dict, compare=False)


def _snippet(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
