"""Decide what a direct change to a model does to its output, by comparing the two versions'
column lineage (`runner.lineage.signature`), traced through CTEs and subqueries:

- only output columns added: non-breaking;
- only some output columns' full lineage changed (their expressions, or the expressions and
  row-deciding clauses of a CTE or subquery only they read): only those columns change, so only
  readers of them break;
- what decides the model's rows changed (FROM, JOIN, WHERE, GROUP BY, HAVING, QUALIFY, DISTINCT,
  ORDER BY/LIMIT of the final select or of any scope its rows flow from): every column may change.

When a version cannot be traced, the comparison falls back to the final select's text: its
output expressions one by one, everything else as a whole.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlglot import exp

from runner.lineage.model import ALL
from runner.lineage.signature import output_signatures
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
               new_outputs: tuple[str, ...] | None,
               resolve: Callable[[tuple[str, ...]], str | None] | None = None,
               upstream_columns: Mapping[str, tuple[str, ...] | None] | None = None) -> ColumnChange:
    """`resolve` and `upstream_columns` (the tables' columns) let `*` on a table expand into
    columns; without them a `*` counts as one column reading everything behind it."""
    if old_sql == new_sql:
        return ColumnChange()
    old_signatures = output_signatures(old_sql, dialect, resolve, upstream_columns)
    new_signatures = output_signatures(new_sql, dialect, resolve, upstream_columns)
    if old_signatures is not None and new_signatures is not None:
        added, removed = _added_removed(old_outputs, new_outputs)
        if old_signatures.rows != new_signatures.rows:
            return ColumnChange(frozenset({ALL}), added, removed)
        old_cols, new_cols = old_signatures.columns, new_signatures.columns
        if old_cols is None or new_cols is None:
            if old_cols == new_cols:  # both unknown: equal rows and `*` signatures
                return ColumnChange(frozenset(), added, removed)
            return ColumnChange(frozenset({ALL}), added, removed)
        return _compare(old_cols, new_cols)
    return _by_text(old_sql, new_sql, dialect, old_outputs, new_outputs)


def _compare(old_cols: Mapping[str, str], new_cols: Mapping[str, str]) -> ColumnChange:
    return ColumnChange(
        changed=frozenset(n for n, sig in new_cols.items() if n in old_cols and old_cols[n] != sig),
        added=frozenset(set(new_cols) - set(old_cols)),
        removed=frozenset(set(old_cols) - set(new_cols)),
    )


def _by_text(old_sql: str, new_sql: str, dialect: str, old_outputs: tuple[str, ...] | None,
             new_outputs: tuple[str, ...] | None) -> ColumnChange:
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
    return _compare(old_cols, new_cols)


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
