"""SQL questions the rules ask of a model's sqlglot tree: what it is, what it calls, what it reads.

Also the pattern language of custom rules: a pattern is SQL parsed by sqlglot, in which `_` stands
for anything; a model matches when some node of its tree has the pattern's shape (every part the
pattern spells out is there, parts it leaves out may be anything). `SELECT DISTINCT _` matches any
SELECT DISTINCT; `_ = NULL` any comparison with NULL; `SELECT _ FROM _ CROSS JOIN _` a cross join.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

# The safety gate is not here: runner/safety/ allows only allowlisted SQL (policies/allowlists/)
# at load, before any rule runs. These lists only word the single-query rule's findings for a
# model that reaches a policy some other way (a report on SQL loaded elsewhere, a rule test).

# Statements and clauses that write, configure or reach outside the warehouse's tables.
FORBIDDEN_NODES: tuple[type[exp.Expr], ...] = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command,
    exp.Set, exp.Pragma, exp.Copy, exp.Attach, exp.Detach, exp.Use, exp.TruncateTable,
    exp.Transaction, exp.Commit, exp.Rollback, exp.Grant, exp.Into, exp.Install, exp.Describe,
    exp.Summarize, exp.Show, exp.Kill, exp.Refresh, exp.Cache, exp.Uncache, exp.Export,
    exp.Analyze, exp.LoadData, exp.Comment, exp.Lock,
)

# Functions that read files, URLs, other databases or the server's environment, or run SQL text.
# Not a setting: reading outside the warehouse from a model is never fine (credentials, local files).
READING_FUNCTIONS = frozenset({
    # DuckDB
    "read_csv", "read_csv_auto", "csv_scan", "sniff_csv", "read_parquet", "parquet_scan",
    "parquet_metadata", "parquet_schema", "parquet_file_metadata", "parquet_kv_metadata",
    "read_json", "read_json_auto", "read_json_objects", "read_json_objects_auto", "read_ndjson",
    "read_ndjson_auto", "read_ndjson_objects", "json_scan", "read_text", "read_blob", "read_xlsx",
    "glob", "iceberg_scan", "iceberg_metadata", "iceberg_snapshots", "delta_scan", "st_read",
    "sqlite_scan", "sqlite_attach", "postgres_scan", "postgres_scan_pushdown", "postgres_query",
    "postgres_attach", "postgres_execute", "mysql_scan", "mysql_query", "mysql_execute",
    "query", "query_table", "getenv", "duckdb_secrets", "duckdb_settings", "load_extension",
    # PostgreSQL
    "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir",
    "pg_ls_waldir", "pg_ls_tmpdir", "lo_import", "lo_export", "lo_get", "dblink", "dblink_exec",
    "dblink_connect", "dblink_open", "dblink_send_query", "pg_file_write", "pg_file_read",
    "current_setting", "set_config", "pg_reload_conf", "pg_terminate_backend",
    "pg_cancel_backend",
})

# Characters that make a quoted table name a path or URL (DuckDB reads `FROM 'x.parquet'`).
_PATHLIKE = set("./\\:*?")


@dataclass(frozen=True)
class Parsed:
    statements: tuple[exp.Expr, ...]
    error: str | None  # why the text does not parse

    @property
    def query(self) -> exp.Query | None:
        """The model's one query, or None when the text is anything else."""
        if len(self.statements) == 1 and isinstance(self.statements[0], exp.Query):
            return self.statements[0]
        return None


def parse(sql: str, dialect: str) -> Parsed:
    try:
        statements = tuple(s for s in sqlglot.parse(sql, read=dialect or None)
                           if s is not None and not isinstance(s, exp.Semicolon))  # `; -- note`
    except (SqlglotError, RecursionError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Parsed((), first)
    return Parsed(statements, None)


def line_of(node: exp.Expr) -> int | None:
    for sub in node.walk():
        line = sub.meta.get("line") if sub.meta else None
        if line is not None:
            return int(line)
    return None


def kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return node.key.upper()


def function_names(node: exp.Expr) -> frozenset[str]:
    """The names a function call answers to, lower-cased (`RANDOM()` is both rand and random)."""
    if isinstance(node, exp.Anonymous):
        return frozenset({str(node.name).lower()})
    if isinstance(node, exp.Func):
        return frozenset({node.key.lower(), *(n.lower() for n in type(node).sql_names())})
    return frozenset()


def calls(tree: exp.Expr) -> Iterator[exp.Func]:
    for node in tree.walk():
        if isinstance(node, exp.Func):
            yield node


def pathlike_tables(tree: exp.Expr) -> Iterator[exp.Table]:
    """Table references whose name is a path or URL rather than a table."""
    for table in tree.find_all(exp.Table):
        pathlike = isinstance(table.this, exp.Identifier) and bool(_PATHLIKE & set(table.name))
        if pathlike or isinstance(table.this, exp.Literal):
            yield table


class FunctionMatcher:
    """Does a call use one of the listed functions? Names are matched through sqlglot's own
    function classes, so `random` also catches `RAND()` in a dialect that spells it so."""

    def __init__(self, names: Iterable[str], dialect: str):
        self.names = frozenset(n.lower() for n in names)
        self.classes = tuple(c for c in (_function_class(n, dialect) for n in self.names) if c)

    def match(self, node: exp.Expr) -> str | None:
        """The listed name the call matches, or None."""
        named = sorted(self.names & function_names(node))
        if named:
            return named[0]
        for cls in self.classes:
            if isinstance(node, cls):
                return next(iter(sorted(self.names & set(_class_names(cls)))), cls.key)
        return None


def _class_names(cls: type[exp.Func]) -> list[str]:
    return [cls.key.lower(), *(n.lower() for n in cls.sql_names())]


@functools.lru_cache(maxsize=512)
def _function_class(name: str, dialect: str) -> type[exp.Func] | None:
    for args in ("", "x", "x, y", "x, y, z"):
        try:
            parsed = sqlglot.parse_one(f"SELECT {name}({args})", read=dialect or None)
        except (SqlglotError, ValueError):
            continue
        projections = parsed.expressions if isinstance(parsed, exp.Select) else []
        node = projections[0] if projections else None
        if isinstance(node, exp.Func) and not isinstance(node, exp.Anonymous):
            return type(node)
        return None
    return None


# -- SELECT * ---------------------------------------------------------------------------------------

def star_projections(query: exp.Expr) -> Iterator[exp.Expr]:
    """`*` and `t.*` in the query's output columns that expand columns of a table outside the file.

    A star over a CTE of the same query whose own output columns are explicit is fine: its
    columns cannot change unless the file does (dbt's `select * from final`).
    """
    yield from _stars(query, {})


def _stars(query: exp.Expr, ctes: dict[str, exp.Expr]) -> Iterator[exp.Expr]:
    if isinstance(query, exp.Subquery):
        yield from _stars(query.this, ctes)
        return
    with_ = query.args.get("with_")
    if isinstance(with_, exp.With):
        ctes = dict(ctes)
        for cte in with_.expressions:
            ctes[cte.alias_or_name.lower()] = cte.this
    if isinstance(query, exp.SetOperation):
        yield from _stars(query.left, ctes)
        yield from _stars(query.right, ctes)
        return
    if not isinstance(query, exp.Select):
        return
    stars = [e for e in query.expressions if _is_star(e)]
    if not stars:
        return
    sources = _sources(query)
    for star in stars:
        qualifier = star.table.lower() if isinstance(star, exp.Column) else ""
        for alias, source in sources:
            if qualifier and alias != qualifier:
                continue
            if not _explicit(source, ctes):
                yield star
                break


def _is_star(node: exp.Expr) -> bool:
    return isinstance(node, exp.Star) or (isinstance(node, exp.Column) and isinstance(node.this, exp.Star))


def _sources(select: exp.Select) -> list[tuple[str, exp.Expr]]:
    from_ = select.args.get("from_")
    nodes = [from_.this] if isinstance(from_, exp.From) else []
    nodes += [join.this for join in select.args.get("joins") or []]
    return [(node.alias_or_name.lower(), node) for node in nodes]


def _explicit(source: exp.Expr, ctes: dict[str, exp.Expr]) -> bool:
    """Are the source's columns fixed by this file?"""
    if isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier) and not source.db:
        body = ctes.get(source.name.lower())
        if body is not None:
            inner = {k: v for k, v in ctes.items() if v is not body}  # no self-reference loops
            return not any(True for _ in _stars(body, inner))
        return False
    if isinstance(source, exp.Subquery):
        return not any(True for _ in _stars(source.this, ctes))
    return False


# -- patterns ---------------------------------------------------------------------------------------

WILDCARD = "_"


@functools.lru_cache(maxsize=512)
def compile_pattern(text: str, dialect: str = "") -> exp.Expr:
    """The pattern's tree; raises ValueError with a hint when it does not parse."""
    for candidate in (text, f"{text} {WILDCARD}"):
        try:
            statements = [s for s in sqlglot.parse(candidate, read=dialect or None) if s is not None]
        except (SqlglotError, ValueError, RecursionError):
            continue
        if len(statements) == 1 and not isinstance(statements[0], exp.Command):
            return statements[0]
    raise ValueError(f"pattern {text!r} does not parse as one SQL query or expression; write it "
                     f"in full with {WILDCARD} for any part, e.g. 'SELECT DISTINCT _'")


def find_pattern(tree: exp.Expr, pattern: exp.Expr) -> exp.Expr | None:
    """The first node of `tree` with the pattern's shape."""
    for node in tree.walk():
        if _matches(node, pattern):
            return node
    return None


def _is_wildcard(node: exp.Expr) -> bool:
    if isinstance(node, exp.Identifier):
        return node.this == WILDCARD
    if isinstance(node, exp.Column | exp.Table):
        return (isinstance(node.this, exp.Identifier) and node.this.this == WILDCARD
                and len(node.parts) == 1)
    return False


def _matches(node: object, pattern: object) -> bool:
    if isinstance(pattern, exp.Expr):
        if _is_wildcard(pattern):
            return isinstance(node, exp.Expr)
        if type(node) is not type(pattern):
            return False
        assert isinstance(node, exp.Expr)
        for key, wanted in pattern.args.items():
            if wanted is None or wanted is False or wanted == []:
                continue  # not written in the pattern: anything goes
            if not _matches(node.args.get(key), wanted):
                return False
        return True
    if isinstance(pattern, list):
        if not isinstance(node, list):
            return False
        remaining = list(node)
        for wanted in pattern:
            hit = next((i for i, item in enumerate(remaining) if _matches(item, wanted)), None)
            if hit is None:
                return False
            remaining.pop(hit)
        return True
    if isinstance(pattern, str):
        return isinstance(node, str) and node.lower() == pattern.lower()
    return node == pattern


# -- WHERE ------------------------------------------------------------------------------------------

def unfiltered_reads(tree: exp.Expr, names: Iterable[str]) -> Iterator[tuple[str, exp.Table]]:
    """Reads of the named tables (`schema.table` or `table`) by a SELECT without a WHERE clause."""
    wanted = [tuple(n.lower().split(".")) for n in names]
    for table in tree.find_all(exp.Table):
        parts = tuple(p.name.lower() for p in table.parts)
        for name in wanted:
            if len(parts) >= len(name) and parts[-len(name):] == name:
                select = table.find_ancestor(exp.Select)
                if select is not None and select.args.get("where") is None:
                    yield ".".join(name), table
                break
