"""Each output column's full lineage expression, as a signature: what the column is computed
from, traced back through every CTE and subquery to the tables the model reads, together with what
decides the rows (WHERE, JOIN, GROUP BY, HAVING, QUALIFY, DISTINCT, LIMIT) of every scope it passes
through.

Two versions of a model whose column signatures are equal compute that column alike from the same
rows, however the rest of the query was edited; categorising a direct change compares them. A pure
function over the parsed model. When in doubt, a signature takes in more of the query, never less:
an unresolved column reads every source of its scope, a `*` every column behind it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from runner.lineage.model import qualify_tables
from runner.project.parsing import parse_canonical

Source = exp.Table | Scope


@dataclass(frozen=True)
class Signatures:
    rows: str  # what decides the model's set of rows
    columns: Mapping[str, str] | None  # output column -> its lineage; None: output names unknown


def output_signatures(canonical: str, dialect: str,
                      resolve: Callable[[tuple[str, ...]], str | None] | None = None,
                      upstream_columns: Mapping[str, tuple[str, ...] | None] | None = None,
                      ) -> Signatures | None:
    """None when the query cannot be traced (the caller falls back to a coarser comparison)."""
    query = parse_canonical(canonical, dialect)
    schema: dict[str, Any] = {}
    if resolve is not None:
        for table in qualify_tables(query, resolve):
            cols = (upstream_columns or {}).get(table)
            if cols:
                db, name = table.split(".", 1)
                schema.setdefault(db, {})[name] = dict.fromkeys(cols, "UNKNOWN")
    try:
        qualified = qualify(query, schema=schema, dialect=dialect, validate_qualify_columns=False,
                            quote_identifiers=False, identify=False)
        scopes = traverse_scope(qualified)
        if not scopes:
            return None
        return _Signer(dialect).model(scopes[-1])
    except (OptimizeError, SqlglotError, KeyError, ValueError, RecursionError):
        return None


def _digest(*parts: str) -> str:
    return hashlib.sha1("\x1f".join(parts).encode()).hexdigest()[:20]


class _Signer:
    def __init__(self, dialect: str):
        self.dialect = dialect
        self._rows: dict[int, str] = {}
        self._columns: dict[tuple[int, str], str] = {}
        self._full: dict[int, str] = {}
        self._active: set[tuple[str, int, str]] = set()  # recursive CTEs: stop, and take it all

    def model(self, root: Scope) -> Signatures:
        rows = self.rows(root)
        select = _leftmost(root)
        names = [p.alias_or_name for p in select.selects]
        if _has_star(select) or len(set(names)) != len(names) or "" in names:
            return Signatures(_digest(rows, self.full(root)), None)
        return Signatures(rows, {name: self.column(root, name) for name in names})

    # -- the three signatures of a scope ---------------------------------------------------------

    def rows(self, scope: Scope) -> str:
        key = id(scope)
        if key not in self._rows:
            self._rows[key] = self._guarded("rows", scope, "", lambda: self._rows_of(scope))
        return self._rows[key]

    def column(self, scope: Scope, name: str) -> str:
        key = (id(scope), name)
        if key not in self._columns:
            self._columns[key] = self._guarded("column", scope, name,
                                               lambda: self._column_of(scope, name))
        return self._columns[key]

    def full(self, scope: Scope) -> str:
        """Everything the scope computes: its rows and all its columns, `*` included."""
        key = id(scope)
        if key not in self._full:
            self._full[key] = self._guarded("full", scope, "", lambda: self._full_of(scope))
        return self._full[key]

    def _guarded(self, kind: str, scope: Scope, name: str, compute: Callable[[], str]) -> str:
        marker = (kind, id(scope), name)
        if marker in self._active:
            # A recursive CTE reaches itself: its own text stands for it.
            return _digest("recursive", scope.expression.sql(dialect=self.dialect))
        self._active.add(marker)
        try:
            return compute()
        finally:
            self._active.discard(marker)

    # -- how they are computed -----------------------------------------------------------------------

    def _rows_of(self, scope: Scope) -> str:
        expression = scope.expression
        if not isinstance(expression, exp.Select | exp.SetOperation):
            return self._other(scope)
        if isinstance(expression, exp.SetOperation):
            left, right = scope.set_operation_scopes
            parts = [type(expression).__name__, str(expression.args.get("distinct")),
                     self.rows(left), self.rows(right), self._modifiers(scope, expression)]
            if expression.args.get("distinct") is not False:
                parts += [self.full(left), self.full(right)]  # duplicates decide rows
            return _digest(*parts)
        assert isinstance(expression, exp.Select)
        skeleton = expression.copy()
        skeleton.set("expressions", [exp.Literal.number(1)])
        skeleton.set("with_", None)
        parts = [self._render(scope, expression, skeleton, skip=("expressions", "with_"))]
        for source in _selected(scope):
            if isinstance(source, Scope):
                parts.append(self.rows(source))
        if _projections_decide_rows(expression):
            parts += [self._projection(scope, p) for p in expression.selects]
        return _digest(*parts)

    def _column_of(self, scope: Scope, name: str) -> str:
        expression = scope.expression
        if not isinstance(expression, exp.Select | exp.SetOperation):
            return self._other(scope)
        if isinstance(expression, exp.SetOperation):
            left, right = scope.set_operation_scopes
            index = _index_of(_leftmost(scope), name)
            if index is None:
                return self.full(scope)
            return _digest(self.rows(scope), self._nth(left, index), self._nth(right, index))
        assert isinstance(expression, exp.Select)
        for projection in expression.selects:
            if projection.alias_or_name == name and not _is_star(projection):
                return _digest(self.rows(scope), self._projection(scope, projection))
        # Not named here: it may come through a `*`.
        stars = [p for p in expression.selects if _is_star(p)]
        if stars:
            sources = _star_sources(scope, stars)
            if len(sources) == 1:
                return _digest(self.rows(scope), self._source_column(sources[0], name))
        return self.full(scope)

    def _full_of(self, scope: Scope) -> str:
        expression = scope.expression
        if not isinstance(expression, exp.Select | exp.SetOperation):
            return self._other(scope)
        if isinstance(expression, exp.SetOperation):
            left, right = scope.set_operation_scopes
            return _digest(self.rows(scope), self.full(left), self.full(right))
        assert isinstance(expression, exp.Select)
        return _digest(self.rows(scope), *(self._projection(scope, p) for p in expression.selects))

    def _other(self, scope: Scope) -> str:
        """A table function (`unnest(...)`, `range(...)`): what it reads resolves in its parent."""
        expression = scope.expression
        if scope.parent is None:
            return _digest("other", expression.sql(dialect=self.dialect))
        return _digest("other", self._render(scope.parent, expression, expression.copy()))

    def _nth(self, scope: Scope, index: int) -> str:
        selects = _leftmost(scope).selects
        if index < len(selects) and not _is_star(selects[index]):
            return self.column(scope, selects[index].alias_or_name)
        return self.full(scope)

    def _projection(self, scope: Scope, projection: exp.Expr) -> str:
        body = projection.this if isinstance(projection, exp.Alias) else projection
        return self._render(scope, body, body.copy())

    def _modifiers(self, scope: Scope, expression: exp.Expr) -> str:
        parts = []
        for key in ("order", "limit", "offset"):
            value = expression.args.get(key)
            if value is not None:
                parts.append(self._render(scope, value, value.copy()))
        return _digest(*parts)

    # -- rendering an expression with its columns replaced by their lineage ------------------------

    def _render(self, scope: Scope, original: exp.Expr, copy: exp.Expr,
                skip: tuple[str, ...] = ()) -> str:
        """The SQL of `copy` (a copy of `original`) with every column, `*` and subquery replaced by
        the signature of what it reads."""
        child_scopes = {id(s.expression): s for s in _children(scope)}
        replacements: list[tuple[exp.Expr, str]] = []
        for node, twin in _twins(original, copy, skip):
            inner = node.unnest() if isinstance(node, exp.Subquery) else node
            if node is not original and id(inner) in child_scopes:
                child = child_scopes[id(inner)]
                if child.is_derived_table:
                    # Its rows and columns count where it is read; here only its place shows.
                    replacements.append((twin, "derived"))
                else:
                    replacements.append((twin, self.full(child)))
            elif isinstance(node, exp.Table) and node is not original:
                # What a table is called here does not matter, only what it is: a CTE's
                # columns and rows count where they are read.
                is_cte = isinstance(scope.sources.get(node.alias_or_name), Scope)
                replacements.append((twin, "cte" if is_cte else _table_name(node)))
            elif isinstance(node, exp.Column) and not isinstance(node.this, exp.Star):
                replacements.append((twin, self._reference(scope, node)))
            elif isinstance(node, exp.Star | exp.Column) and _is_star(node) and not isinstance(
                    node.parent, exp.Func | exp.Count):
                stars = _star_sources(scope, [node])
                places = [str(i) for i, alias in enumerate(scope.selected_sources)
                          if _star_reads(node, alias)]
                replacements.append((twin, _digest(*places, *(self._source_all(s) for s in stars))))
        for twin, signature in replacements:
            if twin.parent is not None or twin is not copy:
                twin.replace(exp.var(f"sig_{signature}"))
            else:
                return signature
        return copy.sql(dialect=self.dialect)

    def _reference(self, scope: Scope, column: exp.Column) -> str:
        """A column's lineage, and which of its scope's sources it reads: with a table or CTE read
        twice, `cur.status` and `prev.status` hold different rows' values."""
        current: Scope | None = scope
        depth = 0
        while current is not None:
            selected = list(current.selected_sources)
            if column.table:
                source = current.sources.get(column.table)
                if isinstance(source, exp.Table | Scope):
                    place = selected.index(column.table) if column.table in selected else -1
                    return _digest(f"{depth}:{place}", self._source_column(source, column.name))
            else:
                sources = list(_selected(current))
                if len(sources) == 1:
                    return _digest(f"{depth}:0", self._source_column(sources[0], column.name))
                if sources:
                    # Unqualified because the columns are unknown: any source may hold it.
                    return _digest(f"{depth}:any",
                                   *(self._source_column(s, column.name) for s in sources))
            current = current.parent
            depth += 1
        return _digest("unresolved", column.sql(dialect=self.dialect))

    def _source_column(self, source: Source, name: str) -> str:
        if isinstance(source, exp.Table):
            return f"{_table_name(source)}.{name}"
        return self.column(source, name)

    def _source_all(self, source: Source) -> str:
        if isinstance(source, exp.Table):
            return f"{_table_name(source)}.*"
        return self.full(source)


def _twins(original: exp.Expr, copy: exp.Expr,
           skip: tuple[str, ...]) -> Iterator[tuple[exp.Expr, exp.Expr]]:
    """Walk two identical trees side by side, not entering the args named in `skip` at the top,
    nor the nodes the caller replaces whole (subqueries, columns)."""
    stack = [(original, copy, True)]
    while stack:
        node, twin, top = stack.pop()
        yield node, twin
        if isinstance(node, exp.Column | exp.Table) or (not top and isinstance(node, exp.Query)):
            continue
        for key, value in node.args.items():
            if top and key in skip:
                continue
            twin_value = twin.args.get(key)
            if isinstance(value, exp.Expr) and isinstance(twin_value, exp.Expr):
                stack.append((value, twin_value, False))
            elif isinstance(value, list) and isinstance(twin_value, list):
                stack.extend((v, t, False) for v, t in zip(value, twin_value, strict=False)
                             if isinstance(v, exp.Expr) and isinstance(t, exp.Expr))


def _children(scope: Scope) -> list[Scope]:
    return [*scope.derived_table_scopes, *scope.subquery_scopes, *scope.udtf_scopes]


def _selected(scope: Scope) -> Iterator[Source]:
    for _, source in scope.selected_sources.values():
        if isinstance(source, exp.Table | Scope):
            yield source


def _star_sources(scope: Scope, stars: list[exp.Expr]) -> list[Source]:
    out: list[Source] = []
    for star in stars:
        for alias, (_, source) in scope.selected_sources.items():
            if _star_reads(star, alias) and isinstance(source, exp.Table | Scope) and source not in out:
                out.append(source)
    return out


def _star_reads(star: exp.Expr, alias: str) -> bool:
    qualifier = star.table if isinstance(star, exp.Column) else ""
    if isinstance(star, exp.Star) and isinstance(star.parent, exp.Column):
        qualifier = star.parent.table
    return not qualifier or alias == qualifier


def _is_star(node: exp.Expr) -> bool:
    return isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star))


def _has_star(select: exp.Query) -> bool:
    return any(_is_star(p) for p in select.selects)


def _leftmost(scope: Scope) -> exp.Query:
    expression = scope.expression
    while isinstance(expression, exp.SetOperation):
        expression = expression.left
    assert isinstance(expression, exp.Query)
    return expression


def _index_of(select: exp.Query, name: str) -> int | None:
    for i, projection in enumerate(select.selects):
        if projection.alias_or_name == name:
            return i
    return None


def _projections_decide_rows(select: exp.Select) -> bool:
    """DISTINCT, GROUP BY ALL or by position, ORDER BY under LIMIT, an aggregate without GROUP BY
    and set-returning functions all let the output expressions decide which rows exist."""
    group = select.args.get("group")
    order = select.args.get("order")
    if select.args.get("distinct") is not None:
        return True
    if group is not None and (group.args.get("all")
                              or any(isinstance(e, exp.Literal) for e in group.expressions)):
        return True
    if order is not None and (select.args.get("limit") or select.args.get("offset")):
        return True
    for projection in select.selects:
        for node in projection.walk():
            if isinstance(node, exp.Unnest | exp.Explode):
                return True
            if group is None and isinstance(node, exp.AggFunc) and not _in_window_or_query(node, projection):
                return True
    return False


def _in_window_or_query(node: exp.Expr, top: exp.Expr) -> bool:
    current = node.parent
    while current is not None and current is not top:
        if isinstance(current, exp.Window | exp.Query):
            return True
        current = current.parent
    return False


def _table_name(table: exp.Table) -> str:
    return ".".join(p.name for p in table.parts)
