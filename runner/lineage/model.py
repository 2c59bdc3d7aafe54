"""Column-level lineage of one model: which upstream columns each output column is computed from,
and which upstream columns decide the set of rows (filters, joins, grouping).

A pure function over the parsed model and the column lists of the tables it reads. The planner uses
it to prove that a downstream model is unaffected by a change ("reads none of the changed columns"),
so when in doubt it answers conservatively: a column it cannot trace counts as read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from runner.project.parsing import parse_canonical, table_references

Ref = tuple[str, str]  # (upstream table's logical name, column)
ALL = "*"  # a column name meaning "every column of that table"


@dataclass(frozen=True)
class ColumnLineage:
    outputs: tuple[str, ...]
    columns: Mapping[str, frozenset[Ref]]  # output column -> upstream columns its values come from
    rows: frozenset[Ref]  # upstream columns that decide which rows exist
    star_tables: frozenset[str]  # upstream tables read with `*`: new columns there flow through

    @property
    def reads(self) -> frozenset[Ref]:
        out = set(self.rows)
        for refs in self.columns.values():
            out |= refs
        return frozenset(out)

    def reads_of(self, table: str) -> frozenset[str]:
        return frozenset(col for t, col in self.reads if t == table)

    def affected_outputs(self, changed: Mapping[str, frozenset[str]]) -> frozenset[str]:
        """Output columns whose values change when these upstream columns change.

        `changed` maps an upstream table to its changed columns (`ALL` for every column).
        """

        def hit(refs: frozenset[Ref]) -> bool:
            for table, col in refs:
                cols = changed.get(table)
                if cols and (col in cols or ALL in cols or col == ALL):
                    return True
            return False

        if hit(self.rows):
            return frozenset(self.outputs)
        return frozenset(o for o, refs in self.columns.items() if hit(refs))


def model_lineage(
    canonical: str,
    dialect: str,
    resolve: Callable[[tuple[str, ...]], str | None],
    upstream_columns: Mapping[str, tuple[str, ...] | None],
) -> ColumnLineage:
    query = parse_canonical(canonical, dialect)
    tables = qualify_tables(query, resolve)
    star_tables = _star_tables(query)
    schema: dict[str, Any] = {}
    for table in tables:
        cols = upstream_columns.get(table)
        if cols is None:
            continue
        db, name = table.split(".", 1)
        schema.setdefault(db, {})[name] = dict.fromkeys(cols, "UNKNOWN")
    try:
        qualified = qualify(query, schema=schema, dialect=dialect, validate_qualify_columns=False,
                            quote_identifiers=False, identify=False)
        return _walk(qualified, star_tables)
    except (OptimizeError, SqlglotError, KeyError, ValueError):
        return _conservative(query, tables, star_tables)


def qualify_tables(query: exp.Expr, resolve: Callable[[tuple[str, ...]], str | None]) -> set[str]:
    """Give every table reference its logical `schema.table` name; returns the names."""
    names: set[str] = set()
    for table in list(table_references(query)):
        target = resolve(tuple(p.name for p in table.parts))
        if target is None:
            continue
        db, name = target.split(".", 1)
        if not table.alias:
            table.set("alias", exp.TableAlias(this=exp.to_identifier(table.name)))
        table.set("db", exp.to_identifier(db))
        table.set("this", exp.to_identifier(name))
        table.set("catalog", None)
        names.add(target)
    return names


def _star_tables(query: exp.Expr) -> frozenset[str]:
    """Tables whose columns flow through a `SELECT *` or `SELECT t.*` (`count(*)` does not count),
    followed into CTEs and subqueries. A column added to one of them changes this model's output."""
    found: set[str] = set()
    try:
        scopes = traverse_scope(query)
    except (OptimizeError, SqlglotError):
        return frozenset(_table_name(t) for t in table_references(query) if t.db)
    for scope in scopes:
        if not isinstance(scope.expression, exp.Select):
            continue
        for projection in scope.expression.expressions:
            star = projection.this if isinstance(projection, exp.Column) else projection
            if not isinstance(star, exp.Star):
                continue
            qualifier = projection.table if isinstance(projection, exp.Column) else None
            for alias, source in scope.sources.items():
                if qualifier and alias != qualifier:
                    continue
                if isinstance(source, exp.Table):
                    found.add(_table_name(source))
                elif isinstance(source, Scope):
                    found.update(_table_name(t) for t in table_references(source.expression) if t.db)
    return frozenset(found)


def _table_name(table: exp.Table) -> str:
    return f"{table.db}.{table.name}"


def _conservative(query: exp.Expr, tables: set[str], star_tables: frozenset[str]) -> ColumnLineage:
    outputs = tuple(s.alias_or_name for s in query.selects) if isinstance(query, exp.Query) else ()
    everything = frozenset((t, ALL) for t in tables)
    return ColumnLineage(outputs=outputs, columns={o: everything for o in outputs}, rows=everything,
                         star_tables=star_tables)


@dataclass
class _ScopeLineage:
    outputs: list[tuple[str, frozenset[Ref]]]
    rows: frozenset[Ref]

    def column(self, name: str) -> frozenset[Ref] | None:
        for out, refs in self.outputs:
            if out == name:
                return refs
        return None

    def everything(self) -> frozenset[Ref]:
        out = set(self.rows)
        for _, refs in self.outputs:
            out |= refs
        return frozenset(out)


def _walk(query: exp.Expr, star_tables: frozenset[str]) -> ColumnLineage:
    done: dict[int, _ScopeLineage] = {}
    root: _ScopeLineage | None = None
    for scope in traverse_scope(query):
        root = _scope_lineage(scope, done)
        done[id(scope)] = root
    assert root is not None
    outputs = tuple(name for name, _ in root.outputs)
    columns: dict[str, frozenset[Ref]] = {}
    for name, refs in root.outputs:
        columns[name] = columns.get(name, frozenset()) | refs
    return ColumnLineage(outputs=outputs, columns=columns, rows=root.rows, star_tables=star_tables)


def _scope_lineage(scope: Scope, done: dict[int, _ScopeLineage]) -> _ScopeLineage:
    if isinstance(scope.expression, exp.SetOperation):
        left, right = (done[id(s)] for s in scope.set_operation_scopes)
        outputs = [
            (name, refs | (right.outputs[i][1] if i < len(right.outputs) else right.everything()))
            for i, (name, refs) in enumerate(left.outputs)
        ]
        union_rows = left.rows | right.rows
        limited = scope.expression.args.get("limit") or scope.expression.args.get("offset")
        if scope.expression.args.get("distinct") is not False or limited:
            for _, refs in outputs:
                union_rows |= refs
        return _ScopeLineage(outputs, union_rows)

    def from_source(source: exp.Table | Scope, name: str) -> frozenset[Ref]:
        if isinstance(source, exp.Table):
            return frozenset({(f"{source.db}.{source.name}", name)})
        inner = done.get(id(source))
        if inner is None:
            return frozenset()
        if name == ALL:
            return inner.everything()
        refs = inner.column(name)
        return refs if refs is not None else inner.everything()

    def resolve(column: exp.Column) -> frozenset[Ref]:
        source = scope.sources.get(column.table)
        if isinstance(source, exp.Table | Scope):
            return from_source(source, column.name)
        if column.table == "":
            # Unqualified because the columns are unknown: any of the scope's sources may hold it.
            sources = [s for s in scope.sources.values() if isinstance(s, exp.Table | Scope)]
            name = column.name if len(sources) == 1 else ALL
            return frozenset().union(*(from_source(s, name) for s in sources))
        return frozenset()

    def star_refs(star: exp.Star) -> frozenset[Ref]:
        """A `*` left after qualification: the columns behind it are unknown, so all of them."""
        if isinstance(star.parent, exp.Func):
            return frozenset()  # count(*)
        qualifier = star.parent.table if isinstance(star.parent, exp.Column) else None
        out: set[Ref] = set()
        for alias, source in scope.sources.items():
            if qualifier and alias != qualifier:
                continue
            if isinstance(source, exp.Table):
                out.add((f"{source.db}.{source.name}", ALL))
            elif isinstance(source, Scope) and id(source) in done:
                out |= done[id(source)].everything()
        return frozenset(out)

    own = {id(c) for c in scope.columns}
    select = scope.expression
    assert isinstance(select, exp.Query)
    projections: list[tuple[str, frozenset[Ref]]] = []
    projection_ids: dict[int, int] = {}
    for i, projection in enumerate(select.selects):
        projection_ids[id(projection)] = i
        found: set[Ref] = set()
        for column in projection.find_all(exp.Column):
            if id(column) in own:
                found |= resolve(column)
        for star in projection.find_all(exp.Star):
            found |= star_refs(star)
        projections.append((projection.alias_or_name, frozenset(found)))

    rows: set[Ref] = set()
    for column in scope.columns:
        if (id(column) in own and not _inside_projection(column, projection_ids, select)
                and _decides_rows(column, select)):
            rows |= resolve(column)
    for source in scope.sources.values():
        if isinstance(source, Scope) and id(source) in done:
            rows |= done[id(source)].rows
    # Subqueries (IN, EXISTS, scalar): their reads count for the projection they sit in, else rows.
    for sub in scope.subquery_scopes:
        inner = done.get(id(sub))
        if inner is None:
            continue
        owner = _owning_projection(sub.expression, projection_ids, select)
        if owner is None:
            rows |= inner.everything()
        else:
            name, owner_refs = projections[owner]
            projections[owner] = (name, owner_refs | inner.everything())
    distinct = select.args.get("distinct")
    if distinct:
        for _, projection_refs in projections:
            rows |= projection_refs
    group = select.args.get("group")
    if group is not None and group.args.get("all"):
        for _, projection_refs in projections:
            rows |= projection_refs
    order = select.args.get("order")
    # ORDER BY decides rows under LIMIT/OFFSET and DISTINCT ON; it may name outputs by alias or
    # position, which scope.columns does not list.
    if order is not None and (select.args.get("limit") or select.args.get("offset")
                              or (distinct is not None and distinct.args.get("on"))):
        names = dict(projections)
        for ordered in order.expressions:
            key = ordered.this
            if isinstance(key, exp.Literal) and key.is_int and 0 < int(key.name) <= len(projections):
                rows |= projections[int(key.name) - 1][1]
            elif isinstance(key, exp.Column) and not key.table and key.name in names:
                rows |= names[key.name]
            for column in key.find_all(exp.Column):
                if id(column) in own:
                    rows |= resolve(column)
    return _ScopeLineage(projections, frozenset(rows))


def _inside_projection(node: exp.Expr, projection_ids: dict[int, int], select: exp.Expr) -> bool:
    return _owning_projection(node, projection_ids, select) is not None


def _owning_projection(node: exp.Expr, projection_ids: dict[int, int], select: exp.Expr) -> int | None:
    current: exp.Expr | None = node
    while current is not None and current is not select:
        if id(current) in projection_ids and current.parent is select:
            return projection_ids[id(current)]
        current = current.parent
    return None


def _decides_rows(column: exp.Column, select: exp.Expr) -> bool:
    """True for a column in WHERE, JOIN, GROUP BY, HAVING, QUALIFY, or ORDER BY with a LIMIT."""
    current: exp.Expr | None = column
    while current is not None and current.parent is not select:
        current = current.parent
    if current is None:
        return True
    key = current.arg_key
    if key in ("order",):
        return bool(select.args.get("limit") or select.args.get("offset"))
    return key not in ("expressions", "with_")
