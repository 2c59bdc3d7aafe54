"""Parse one model's SQL with sqlglot: check it is a single query, canonicalise it, find its tables.

The canonical text (parsed, identifiers normalised, regenerated without comments) is what
fingerprints hash and what later steps parse again, so whitespace, comments and keyword case never
count as a change.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

from runner.errors import ProjectError

# Nodes that must never appear inside a model: a model reads, it never writes or configures.
_FORBIDDEN = (
    exp.Insert, exp.Update, exp.Delete, exp.Merge, exp.Create, exp.Drop, exp.Alter, exp.Command,
    exp.Set, exp.Pragma, exp.Copy, exp.Attach, exp.Detach, exp.Use, exp.TruncateTable,
    exp.Transaction, exp.Commit, exp.Rollback, exp.Grant,
)


# Characters that have no business in a table or column name and every business in an injection.
_SUSPICIOUS = re.compile(r"""['"`;\n\r]|--|/\*|\*/""")


@dataclass(frozen=True)
class TableRef:
    """A table the query reads, as written (lower-cased parts), with the line it is on."""

    parts: tuple[str, ...]
    line: int | None

    @property
    def text(self) -> str:
        return ".".join(self.parts)


@dataclass(frozen=True)
class ParsedQuery:
    canonical: str
    refs: tuple[TableRef, ...]


def _statement_kind(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):  # a statement sqlglot does not model: LOAD, INSTALL, ...
        return str(node.this).upper()
    return node.key.upper()


def parse_query(sql: str, dialect: str, file: str) -> ParsedQuery:
    """Parse a model or test file: exactly one SELECT (CTEs and set operations allowed)."""
    try:
        # A trailing comment after the last `;` parses as an empty statement: not a second query.
        statements = [s for s in sqlglot.parse(sql, read=dialect)
                      if s is not None and not isinstance(s, exp.Semicolon)]
    except (ParseError, TokenError) as exc:
        raise _syntax_error(exc, file) from None
    if not statements:
        raise ProjectError("the file holds no SQL query; a model is one SELECT statement", file=file)
    if len(statements) > 1:
        line = _first_line(statements[1])
        raise ProjectError(
            f"the file holds {len(statements)} statements; a model is exactly one SELECT "
            "(remove the extra statements)",
            file=file, line=line,
        )
    query = statements[0]
    if not isinstance(query, exp.Query):
        raise ProjectError(
            f"a model must be a SELECT query, found {_statement_kind(query)}; "
            "Sluice creates and replaces tables itself",
            file=file, line=_first_line(query) or _first_text_line(sql),
        )
    for node in query.walk():
        if isinstance(node, exp.Identifier) and _SUSPICIOUS.search(node.name):
            raise ProjectError(
                f"identifier {node.name[:60]!r} holds quotes, a semicolon, a comment marker or a "
                "line break; name tables and columns plainly",
                file=file, line=_first_line(node),
            )
        if isinstance(node, _FORBIDDEN):
            raise ProjectError(
                f"{_statement_kind(node)} is not allowed inside a model; a model only reads",
                file=file, line=_first_line(node),
            )
    query = normalize_identifiers(query, dialect=dialect)
    assert isinstance(query, exp.Query)
    refs = tuple(_table_refs(query, file))
    return ParsedQuery(canonical=query.sql(dialect=dialect, comments=False), refs=refs)


def table_references(query: exp.Expr) -> Iterator[exp.Table]:
    """The tables a query reads, leaving out references to CTEs visible where they appear."""
    for table in query.find_all(exp.Table):
        if not _names_cte(table):
            yield table


def _names_cte(table: exp.Table) -> bool:
    if table.db or table.catalog or not isinstance(table.this, exp.Identifier):
        return False
    name = table.name
    child: exp.Expr = table
    node = table.parent
    while node is not None:
        if isinstance(node, exp.With):
            # Inside a CTE: the CTEs before it are visible, and itself when recursive.
            position = next(i for i, cte in enumerate(node.expressions) if cte is child)
            visible = node.expressions[: position + 1 if node.args.get("recursive") else position]
            if any(cte.alias_or_name == name for cte in visible):
                return True
        elif isinstance(node, exp.Query):
            with_ = node.args.get("with_")
            if with_ is not None and child is not with_ and any(
                    cte.alias_or_name == name for cte in with_.expressions):
                return True
        child, node = node, node.parent
    return False


def _table_refs(query: exp.Expr, file: str) -> list[TableRef]:
    refs: list[TableRef] = []
    for table in table_references(query):
        if not isinstance(table.this, exp.Identifier):
            raise ProjectError(
                f"table function {table.this.sql()[:60]!r} is not allowed; read models, seeds "
                "and declared sources only",
                file=file, line=_first_line(table),
            )
        refs.append(TableRef(tuple(p.name for p in table.parts), _first_line(table)))
    return refs


def _first_line(node: exp.Expr) -> int | None:
    for sub in node.walk():
        line = sub.meta.get("line") if sub.meta else None
        if line is not None:
            return int(line)
    return None


def _first_text_line(sql: str) -> int:
    """The line the text starts on (a statement sqlglot keeps as a command carries no position)."""
    return sql[: len(sql) - len(sql.lstrip())].count("\n") + 1


def _syntax_error(exc: ParseError | TokenError, file: str) -> ProjectError:
    if isinstance(exc, ParseError) and exc.errors:
        first = exc.errors[0]
        description = first.get("description") or "syntax error"
        line = first.get("line")
        return ProjectError(f"SQL syntax error: {description}", file=file, line=line)
    return ProjectError(f"SQL syntax error: {str(exc).splitlines()[0]}", file=file)


def parse_canonical(canonical: str, dialect: str) -> exp.Query:
    """Parse text that `parse_query` produced (already checked and normalised)."""
    query = sqlglot.parse_one(canonical, read=dialect)
    assert isinstance(query, exp.Query)
    return query
