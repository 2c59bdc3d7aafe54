"""`/diff --where "<predicate>"`: a condition typed in a merge request comment, made safe to run.

The text is untrusted. It is parsed by sqlglot and accepted only if every node of the tree is on
an allow-list: one boolean condition over the model's columns and literals, calling only functions
of the dialect's SQL allowlist (the one models and tests pass, `runner.safety`). Anything else (a
subquery, a second statement, a table function, an unknown or table-qualified column, `*`) is
refused with a message naming the offending part. The returned tree holds the model's column names
as quoted identifiers, ready to filter both sides of a diff.
"""

from __future__ import annotations

from collections.abc import Collection

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError

from runner.errors import SluiceError
from runner.safety import Allowlist, check_query, load_allowlist
from runner.safety.check import function_name


class PredicateError(SluiceError):
    """A `--where` predicate that is not one safe condition over the model's columns."""


# Nodes that make up conditions: comparisons, boolean logic, membership, ranges, patterns.
CONDITIONS: tuple[type[exp.Expr], ...] = (
    exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.NullSafeEQ, exp.NullSafeNEQ,
    exp.Is, exp.In, exp.Between, exp.Like, exp.ILike, exp.Escape,
)
LOGIC: tuple[type[exp.Expr], ...] = (exp.And, exp.Or, exp.Not, exp.Paren)
ARITHMETIC: tuple[type[exp.Expr], ...] = (exp.Add, exp.Sub, exp.Mul, exp.Div, exp.Mod, exp.Neg, exp.DPipe)
LITERALS: tuple[type[exp.Expr], ...] = (exp.Literal, exp.Null, exp.Boolean)

# Types a value may be cast to: scalars only (no nested, no user-defined types).
CAST_TYPES = (exp.DataType.NUMERIC_TYPES | exp.DataType.TEXT_TYPES | exp.DataType.TEMPORAL_TYPES
              | {exp.DType.BOOLEAN})

MAX_LENGTH = 2000  # a condition typed in a comment; longer text is refused before parsing


def parse_predicate(text: str, columns: Collection[str], dialect: str,
                    allowlist: Allowlist | None = None) -> exp.Expr:
    """The condition in `text` over `columns`, or PredicateError saying what is not allowed."""
    allow = allowlist if allowlist is not None else load_allowlist(dialect)
    if not text.strip():
        raise PredicateError("`--where` needs a condition, e.g. --where \"status = 'paid'\"")
    if len(text) > MAX_LENGTH:
        raise PredicateError(f"`--where` is too long ({len(text)} characters; at most {MAX_LENGTH})")
    try:
        statements = [s for s in sqlglot.parse(text, read=dialect) if s is not None]
    except ParseError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "syntax error"
        raise PredicateError(f"`--where {text}` is not valid SQL: {first}") from None
    if not statements:
        raise PredicateError("`--where` needs a condition, e.g. --where \"status = 'paid'\"")
    if len(statements) > 1:
        raise PredicateError(f"`--where` takes one condition, not several statements: "
                             f"refusing `{_shown(statements[1], dialect)}`")
    predicate = statements[0]
    if isinstance(predicate, exp.Query | exp.Subquery):
        raise PredicateError(f"`--where` takes a condition, not a query: `{_shown(predicate, dialect)}`")
    if not isinstance(predicate, exp.Condition):
        raise PredicateError(f"`--where` takes one condition, not a statement: "
                             f"`{_shown(predicate, dialect)}`")
    names = {name.lower(): name for name in columns}
    for node in predicate.walk():
        _check(node, names, dialect, allow)
    # And the check every model passes, on the condition as it will run: reads no table at all.
    refusals = check_query(exp.select(exp.Star()).where(predicate.copy()), dialect, None, "--where",
                           allowlist=allow)
    if refusals:
        raise PredicateError(f"`--where`: {refusals[0].message}")
    if not _is_condition(predicate):
        raise PredicateError(f"`--where` must be a condition such as `status = 'paid'` or `amount > 10`, "
                             f"not `{_shown(predicate, dialect)}`")
    return predicate.transform(lambda node: _quoted(node, names))


def _quoted(node: exp.Expr, names: dict[str, str]) -> exp.Expr:
    """Columns as quoted identifiers with the model's spelling; comments dropped (they reach no SQL)."""
    if isinstance(node, exp.Column):
        return exp.column(names[node.name.lower()], quoted=True)
    node.comments = None
    return node


def _is_condition(node: exp.Expr) -> bool:
    if isinstance(node, exp.Paren):
        return _is_condition(node.this)
    if isinstance(node, exp.And | exp.Or):
        return _is_condition(node.this) and _is_condition(node.expression)
    if isinstance(node, exp.Not):
        return _is_condition(node.this)
    if isinstance(node, exp.Boolean):
        return True
    return isinstance(node, CONDITIONS)


def _check(node: exp.Expr, names: dict[str, str], dialect: str, allow: Allowlist) -> None:
    shown = _shown(node, dialect)
    if isinstance(node, exp.Query | exp.Subquery | exp.Exists):
        raise PredicateError(f"subqueries are not allowed in `--where`: `{shown}`")
    if isinstance(node, exp.Star):
        raise PredicateError("`*` is not allowed in `--where`: name the columns")
    if isinstance(node, exp.Placeholder | exp.Parameter | exp.SessionParameter):
        raise PredicateError(f"parameters are not allowed in `--where`: `{shown}`")
    if isinstance(node, exp.Column):
        if node.table or node.args.get("db") or node.args.get("catalog"):
            raise PredicateError(f"`{shown}` names a table: in `--where` name the column alone "
                                 f"(`{node.name}`)")
        if not isinstance(node.this, exp.Identifier):
            raise PredicateError(f"`{shown}` is not a column name")
        if node.name.lower() not in names:
            known = ", ".join(sorted(names.values())) or "none"
            raise PredicateError(f"unknown column `{node.name}` in `--where` (the model's columns: {known})")
        return
    if isinstance(node, exp.Identifier):
        if isinstance(node.parent, exp.Column):
            return
        raise PredicateError(f"`{shown}` is not allowed in `--where`")
    if isinstance(node, exp.In):
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise PredicateError(f"`IN` takes a list of values in `--where`: `{shown}`")
        if not node.expressions:
            raise PredicateError(f"`IN` needs at least one value in `--where`: `{shown}`")
        for member in node.expressions:
            if not _is_value(member):
                raise PredicateError(f"`IN` takes a list of literal values in `--where`, "
                                     f"not `{_shown(member, dialect)}`")
        return
    if isinstance(node, exp.Var):
        # A bare word is only a unit: date_trunc('month', d), extract(year from d), INTERVAL 1 DAY.
        if _is_unit(node):
            return
        raise PredicateError(f"`{shown}` is not allowed in `--where`")
    if isinstance(node, exp.DataType):
        if isinstance(node.parent, exp.Cast) and node.is_type(*CAST_TYPES):
            return
        raise PredicateError(f"casting to `{shown}` is not allowed in `--where` (numbers, text, dates, "
                             f"timestamps and booleans only)")
    if isinstance(node, exp.DataTypeParam):
        if isinstance(node.parent, exp.DataType) and isinstance(node.this, exp.Literal):
            return
        raise PredicateError(f"`{shown}` is not allowed in `--where`")
    if isinstance(node, exp.Interval):
        return
    if isinstance(node, CONDITIONS + LOGIC + ARITHMETIC + LITERALS):
        return
    if isinstance(node, exp.Func):
        name = function_name(node, dialect)
        if name is None or (allow.allows(name) and name not in allow.generators):
            return
        raise PredicateError(f"function `{name}` is not allowed in `--where` (allowlist: "
                             f"{allow.file})")
    raise PredicateError(f"`{shown}` is not allowed in `--where`")


def _is_value(node: exp.Expr) -> bool:
    """A literal, possibly negated or cast (`-1`, `DATE '2024-01-01'`)."""
    if isinstance(node, LITERALS):
        return True
    if isinstance(node, exp.Neg | exp.Paren):
        return _is_value(node.this)
    if isinstance(node, exp.Cast):
        return _is_value(node.this)
    return False


def _is_unit(node: exp.Var) -> bool:
    parent = node.parent
    if isinstance(parent, exp.Interval | exp.DateTrunc | exp.TimestampTrunc) and node.arg_key == "unit":
        return True
    return isinstance(parent, exp.Extract) and node.arg_key == "this"


def _shown(node: exp.Expr, dialect: str) -> str:
    try:
        text = node.sql(dialect=dialect)
    except Exception:  # a node sqlglot cannot print in this dialect: show its kind
        text = node.key
    return text if len(text) <= 80 else text[:77] + "..."
