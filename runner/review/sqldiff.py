"""The semantic SQL diff of a model: a unified diff of the old and new SQL, both parsed and
pretty-printed by sqlglot, so reformatting, comments and keyword case never show as changes."""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from sqlglot import diff as ast_diff
from sqlglot.diff import Keep

from runner.project.parsing import parse_canonical


@dataclass(frozen=True)
class SqlDiff:
    model: str
    unified: str  # "" when the ASTs are equal
    edits: int  # AST edits sqlglot's diff found (inserts, removes, updates, moves)


def pretty(canonical: str, dialect: str) -> str:
    return parse_canonical(canonical, dialect).sql(dialect=dialect, pretty=True)


def sql_diff(model: str, old: str, new: str, dialect: str, context: int = 3) -> SqlDiff:
    if old == new:
        return SqlDiff(model, "", 0)
    before, after = parse_canonical(old, dialect), parse_canonical(new, dialect)
    edits = sum(1 for edit in ast_diff(before, after, delta_only=True) if not isinstance(edit, Keep))
    if edits == 0:
        return SqlDiff(model, "", 0)
    lines = difflib.unified_diff(
        before.sql(dialect=dialect, pretty=True).splitlines(),
        after.sql(dialect=dialect, pretty=True).splitlines(),
        fromfile=f"{model} (production)", tofile=f"{model} (this change)", lineterm="", n=context)
    return SqlDiff(model, "\n".join(lines), edits)
