"""Is this SQL safe to run for a merge request? Allow, don't deny: a body passes only if it is one
query, every table it reads is a model, seed or declared source of the project (or a CTE in scope),
and every function it calls is on the dialect's allowlist. Everything else is a refusal naming the
file, the line and the construct.

The check runs on sqlglot's tree, and the warehouse only ever runs SQL that sqlglot regenerated from
that tree (canonical text, rewritten to physical names), so what is checked is what runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from runner.errors import ProjectError
from runner.project.nodes import Names, resolve_name
from runner.project.parsing import table_references
from runner.safety.allowlist import SERVER_KEY, Allowlist, load_allowlist

# Statements and clauses that write, configure, lock or reach outside the warehouse's tables. A query
# must be made of none of them; a top-level statement that is not a query is refused before this.
_STATEMENTS: tuple[type[exp.Expr], ...] = tuple(
    c for c in (getattr(exp, name, None) for name in (
        "DDL", "DML", "Command", "Set", "Pragma", "Copy", "Attach", "Detach", "Use", "TruncateTable",
        "Transaction", "Commit", "Rollback", "Grant", "Revoke", "Into", "Install", "Describe",
        "Summarize", "Show", "Kill", "Refresh", "Cache", "Uncache", "Export", "Analyze", "LoadData",
        "Comment", "Lock", "Merge", "Insert", "Update", "Delete", "Create", "Drop", "Alter"))
    if isinstance(c, type))

_PARAMETERS = (exp.Placeholder, exp.Parameter, exp.SessionParameter)

# Casts may only reach plain value types: casts to catalog types (regclass) look objects up, and a
# user-defined type runs its author's input function.
_VALUE_TYPES = (exp.DataType.NUMERIC_TYPES | exp.DataType.TEXT_TYPES | exp.DataType.TEMPORAL_TYPES
                | exp.DataType.NESTED_TYPES | {
                    exp.DType.BOOLEAN, exp.DType.JSON, exp.DType.JSONB, exp.DType.UUID,
                    exp.DType.BINARY, exp.DType.VARBINARY, exp.DType.BLOB, exp.DType.INTERVAL,
                    exp.DType.NULL, exp.DType.UNKNOWN, exp.DType.BIT, exp.DType.MONEY,
                    exp.DType.ENUM, exp.DType.VARIANT, exp.DType.UNION, exp.DType.INET,
                })

# Schemas that hold the engine's own catalog, settings and statistics: never a project's table.
SYSTEM_SCHEMAS = frozenset({"information_schema", "pg_catalog", "pg_toast", "system", "temp"})
_SYSTEM_TABLE = re.compile(r"^(duckdb_|pg_|sqlite_)")

_CALLED = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_$]*)\s*\(")
_BARE_WORD = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_$]*)\s*$")

_Refuser = Callable[[exp.Expr, str], None]

QUERY_KINDS = "SELECT, WITH, UNION/INTERSECT/EXCEPT or VALUES"


@dataclass(frozen=True)
class Refusal:
    """One reason a body may not run, for the user: `file:line: message`."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class UnsafeSQL(ProjectError):
    """SQL that the safety check refuses; carries every refusal, shows the first."""

    def __init__(self, refusals: list[Refusal]):
        first = refusals[0]
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        super().__init__(first.message + more, file=first.file, line=first.line)
        self.refusals = tuple(refusals)


def refuse_unsafe(refusals: list[Refusal]) -> None:
    """Raise UnsafeSQL when there is any refusal."""
    if refusals:
        raise UnsafeSQL(refusals)


def check_sql(sql: str, dialect: str, names: Names | None, file: str, line_offset: int = 0,
              allowlist: Allowlist | None = None) -> list[Refusal]:
    """Parse `sql` (a model, a test, dbt's compiled SQL) and check it; `line_offset` is added to
    every line (the compiled text's first line in its file, minus one)."""
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect or None)
                      if s is not None and not isinstance(s, exp.Semicolon)]
    except (SqlglotError, RecursionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return [Refusal(file, None, f"the SQL does not parse: {first[:200]}")]
    if not statements:
        return [Refusal(file, None, "the file holds no SQL query")]
    if len(statements) > 1:
        kinds = ", ".join(_kind(s) for s in statements)
        return [Refusal(file, _line(statements[1], line_offset),
                        f"{len(statements)} statements ({kinds}); the body must be exactly one query")]
    return check_query(statements[0], dialect, names, file, line_offset, allowlist)


def check_canonical(canonical: str, dialect: str, names: Names | None, file: str,
                    allowlist: Allowlist | None = None) -> list[Refusal]:
    """Check the canonical text that will run (it may come from the parse cache, not from the
    file just checked); its one line is no line of the file, so refusals name the file alone."""
    return [Refusal(r.file, None, r.message)
            for r in check_sql(canonical, dialect, names, file, allowlist=allowlist)]


def check_body(text: str, canonical: str, dialect: str, names: Names | None, file: str,
               allowlist: Allowlist | None = None) -> list[Refusal]:
    """Check a model or test: the file's text (what its author wrote, with lines to name; some
    constructs, such as DuckDB's FOR UPDATE, vanish from the canonical form) and then the
    canonical SQL, which is what runs and may come from the parse cache."""
    return (check_sql(text, dialect, names, file, allowlist=allowlist)
            or check_canonical(canonical, dialect, names, file, allowlist))


def check_query(tree: exp.Expr, dialect: str, names: Names | None, file: str, line_offset: int = 0,
                allowlist: Allowlist | None = None) -> list[Refusal]:
    """Every refusal for one parsed statement. `names`: the project's models, seeds and sources a
    table reference may resolve to (None: no table may be read, as in a `--where` predicate)."""
    allow = allowlist if allowlist is not None else load_allowlist(dialect)
    refusals: list[Refusal] = []
    said: set[str] = set()

    def refuse(node: exp.Expr, message: str) -> None:
        if message not in said:
            said.add(message)
            refusals.append(Refusal(file, _line(node, line_offset), message))

    if not isinstance(tree, exp.Query | exp.Values):
        refuse(tree, f"statement {_kind(tree)} is not allowed; the body must be one query "
               f"({QUERY_KINDS})")
        return refusals
    # Identifiers as the engine will see them (quoted names keep their case where the dialect
    # says so), on a copy: the caller's tree keeps its own spelling and lines.
    tree = normalize_identifiers(tree.copy(), dialect=dialect or None)
    outside = {id(t) for t in table_references(tree)}  # tables that are not CTEs in scope
    for node in tree.walk():
        if isinstance(node, _STATEMENTS):
            refuse(node, f"{_kind(node)} is not allowed inside a query; a model or test only reads")
        elif isinstance(node, _PARAMETERS):
            refuse(node, f"parameter {_shown(node, dialect)} is not allowed; write the value")
        elif isinstance(node, exp.Table):
            if id(node) in outside:
                _table(node, names, refuse)
        elif isinstance(node, exp.Func):
            _function(node, dialect, allow, refuse)
        elif isinstance(node, exp.ObjectIdentifier):
            refuse(node, f"type {node.name} is not allowed (it looks objects up in the catalog)")
        elif isinstance(node, exp.DataType) and not node.is_type(*_VALUE_TYPES):
            refuse(node, f"type {_shown(node, dialect)} is not allowed (plain value types only)")
        elif isinstance(node, exp.With) and node.args.get("recursive"):
            for cte in node.expressions:
                if _unbounded(cte):
                    refuse(cte, f"recursive CTE {cte.alias_or_name} has no stop condition (a WHERE "
                           "in its recursive part)")
    return refusals


def _table(table: exp.Table, names: Names | None, refuse: _Refuser) -> None:
    if not isinstance(table.this, exp.Identifier):
        if isinstance(table.this, exp.Literal):
            refuse(table, f"{table.this.name!r} is a file path or URL, not a table; read models, "
                   "seeds and declared sources only")
        return  # a table function: its call is checked as a function
    text = ".".join(p.name for p in table.parts)
    if table.catalog and (names is None or text not in names.qualified):
        # Only a source declared with its `database:` may be named with one.
        refuse(table, f"table {text} names a database; read models, seeds and declared sources "
               "of this project only")
        return
    target = resolve_name(tuple(p.name for p in table.parts), names) if names is not None else None
    if target is None:
        if names is None:
            refuse(table, f"table {text} is not allowed here")
        else:
            refuse(table, f"table {text!r} is not a model, a seed or a declared source; declare it "
                   "under 'sources:' in a YAML file or add the model")
        return
    schema, name = target.split(".", 1)
    if schema in SYSTEM_SCHEMAS or schema.startswith("pg_") or _SYSTEM_TABLE.match(name):
        refuse(table, f"table {target} is part of the engine's catalog, not the project's data")


def _function(node: exp.Func, dialect: str, allow: Allowlist, refuse: _Refuser) -> None:
    name = function_name(node, dialect)
    if name is None:
        return
    parent = node.parent
    if isinstance(parent, exp.Dot) and parent.expression is node:
        qualifier = parent.this.sql(dialect=dialect or None).lower().replace('"', "")
        if qualifier not in allow.system_schemas:
            refuse(node, f"function {qualifier}.{name} is not allowed: it is not one of the "
                   f"engine's own functions ({_where(allow)})")
            return
    table_position = isinstance(parent, exp.Table | exp.From | exp.Join | exp.Lateral)
    if allow.allows(name, table_position):
        return
    if table_position and allow.allows(name):
        refuse(node, f"function {name} is not a table function that may be read from "
               f"(generators: {', '.join(sorted(allow.generators))})")
        return
    refuse(node, f"function {name} is not allowed ({_where(allow)})")


def function_name(node: exp.Func, dialect: str) -> str | None:
    """The name the engine will call, lower-cased: what sqlglot generates for this dialect (it
    may spell a function its own way: string_agg is LISTAGG on DuckDB). None when the call is
    written as an operator or clause (`a ->> 'k'`, `CASE ...`, `[1, 2]`), which calls no named
    function of the engine's."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    try:
        text = node.sql(dialect=dialect or None)
    except Exception:  # a node sqlglot cannot print in this dialect: judge it by its kind
        return node.key.lower()
    match = _CALLED.match(text) or _BARE_WORD.match(text)  # `f(...)`, or `CURRENT_USER`
    return match.group(1).lower() if match else None


def _where(allow: Allowlist) -> str:
    return f"allowlist: {allow.file}; a server policy can extend it with {SERVER_KEY}"


def _unbounded(cte: exp.CTE) -> bool:
    """A recursive CTE whose recursive branch has no WHERE (nor LIMIT): it never stops by itself."""
    body = cte.this
    if not isinstance(body, exp.Union) or body.args.get("limit"):
        return False
    recursive = body.expression
    if not isinstance(recursive, exp.Select):
        return False
    reads_itself = any(t.name == cte.alias_or_name for t in recursive.find_all(exp.Table))
    return reads_itself and recursive.args.get("where") is None and not recursive.args.get("limit")


def _kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return node.key.upper()


def _line(node: exp.Expr, offset: int) -> int | None:
    """The first line the node's text is on (a node without position, like a type, takes its
    nearest ancestor's)."""
    current: exp.Expr | None = node
    while current is not None:
        for sub in current.walk():
            line = sub.meta.get("line") if sub.meta else None
            if line is not None:
                return int(line) + offset
        current = current.parent
    return None


def _shown(node: exp.Expr, dialect: str) -> str:
    try:
        text = node.sql(dialect=dialect or None)
    except Exception:
        text = node.key
    return text if len(text) <= 60 else text[:57] + "..."
