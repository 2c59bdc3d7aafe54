"""What a model rule receives: the model's facts, its parsed SQL and the whole project."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlglot import exp

from policies.findings import Finding, RuleSettings
from policies.inputs import ModelFacts, ProjectFacts
from policies.sql import Parsed, line_of, parse

if TYPE_CHECKING:
    from policies.policy import Policy


@dataclass(frozen=True)
class ModelView:
    facts: ModelFacts
    parsed: Parsed
    project: ProjectFacts

    @classmethod
    def of(cls, facts: ModelFacts, project: ProjectFacts) -> ModelView:
        return cls(facts, parse(facts.sql, facts.dialect), project)

    @property
    def query(self) -> exp.Query | None:
        """The parsed query; None when the SQL is not one query (`single-query` reports that)."""
        return self.parsed.query

    def finding(self, rule: RuleSettings, message: str, node: exp.Expr | None = None,
                fix: str | None = None) -> Finding:
        return rule.finding(self.facts.name, message, fix=fix, path=self.facts.path,
                            line=line_of(node) if node is not None else None)


# A model rule: built-ins, custom YAML rules and `sluice.policies` entry points all have this shape.
ModelRule = Callable[[RuleSettings, "Policy", ModelView], Iterable[Finding]]
