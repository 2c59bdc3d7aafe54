"""Decide what a direct change to a model does to its output, by comparing the two ASTs.

- only output columns added: non-breaking;
- only some output columns' expressions rewritten (FROM, JOIN, WHERE, GROUP BY, HAVING, QUALIFY,
  DISTINCT, ORDER BY/LIMIT untouched): only those columns change, so only readers of them break;
- anything else: every column may change.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from runner.lineage.model import ALL
from runner.project.parsing import parse_canonical


@dataclass(frozen=True)
class ColumnChange:
    """How a model's data differs from its previous version, column by column."""

    changed: frozenset[str] = frozenset()  # columns whose values may differ ({ALL}: every column)
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()

    @property
    def everything(self) -> bool:
        return ALL in self.changed

    @property
    def is_empty(self) -> bool:
        return not (self.changed or self.added or self.removed)

    @property
    def additive_only(self) -> bool:
        return bool(self.added) and not self.changed and not self.removed

    def union(self, other: ColumnChange) -> ColumnChange:
        return ColumnChange(self.changed | other.changed, self.added | other.added,
                            self.removed | other.removed)

    def for_readers(self) -> frozenset[str]:
        """What a downstream reader sees as changed: rewritten and removed columns."""
        return self.changed | self.removed


EVERYTHING = ColumnChange(changed=frozenset({ALL}))


def categorize(old_sql: str, new_sql: str, dialect: str, old_outputs: tuple[str, ...] | None,
               new_outputs: tuple[str, ...] | None) -> ColumnChange:
    if old_sql == new_sql:
        return ColumnChange()
    old = parse_canonical(old_sql, dialect)
    new = parse_canonical(new_sql, dialect)
    added, removed = _added_removed(old_outputs, new_outputs)
    if not isinstance(old, exp.Select) or not isinstance(new, exp.Select):
        return ColumnChange(frozenset({ALL}), added, removed)
    if _skeleton(old, dialect) != _skeleton(new, dialect):
        return ColumnChange(frozenset({ALL}), added, removed)
    old_cols = _projections(old, dialect)
    new_cols = _projections(new, dialect)
    if old_cols is None or new_cols is None:
        return ColumnChange(frozenset({ALL}), added, removed)
    changed = frozenset(name for name, sql in new_cols.items() if name in old_cols and old_cols[name] != sql)
    return ColumnChange(
        changed=changed,
        added=frozenset(set(new_cols) - set(old_cols)),
        removed=frozenset(set(old_cols) - set(new_cols)),
    )


def _added_removed(old: tuple[str, ...] | None,
                   new: tuple[str, ...] | None) -> tuple[frozenset[str], frozenset[str]]:
    if old is None or new is None:
        return frozenset(), frozenset()
    return frozenset(set(new) - set(old)), frozenset(set(old) - set(new))


def _skeleton(select: exp.Select, dialect: str) -> str:
    """The query without its output list: what decides the rows."""
    bare = select.copy()
    bare.set("expressions", [exp.Literal.number(1)])
    return bare.sql(dialect=dialect)


def _projections(select: exp.Select, dialect: str) -> dict[str, str] | None:
    """Output name -> expression text; None when names are not all known (e.g. `*`)."""
    out: dict[str, str] = {}
    for projection in select.expressions:
        if isinstance(projection, exp.Star) or (isinstance(projection, exp.Column)
                                                and isinstance(projection.this, exp.Star)):
            return None
        name = projection.alias_or_name
        body = projection.this if isinstance(projection, exp.Alias) else projection
        if name in out:
            return None
        out[name] = body.sql(dialect=dialect)
    return out
