"""How far a project's files and a run may go: sizes, nesting depth, build and report time.

One frozen value, made from the server configuration at the edge and passed down; every refusal
names the file and the server setting that raises the limit, so a maintainer knows what to change.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from runner.errors import ProjectError

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    max_model_bytes: int = 1 * MIB  # one model or test SQL file
    max_yaml_bytes: int = 1 * MIB  # sluice.yml and each models YAML file
    max_seed_bytes: int = 100 * MIB  # one seed CSV file
    max_nesting: int = 32  # nested parentheses in SQL, nested collections in YAML (sqlglot recurses)
    max_yaml_nodes: int = 100_000  # values in one YAML file with its aliases expanded
    report_budget: float | None = 600.0  # seconds for a report's data diffs; None: no budget

    def check_size(self, size: int, kind: str, file: str) -> None:
        """Refuse a file over its cap, before reading it. `kind`: "model", "yaml" or "seed"."""
        cap, key = {"model": (self.max_model_bytes, "max_model_bytes"),
                    "yaml": (self.max_yaml_bytes, "max_yaml_bytes"),
                    "seed": (self.max_seed_bytes, "max_seed_bytes")}[kind]
        if size > cap:
            raise ProjectError(f"the file is {_size(size)}, over the limit of {_size(cap)} for a "
                               f"{kind} file; the server setting {key} raises it", file=file)

    def too_deep(self, depth: int, file: str, line: int | None = None) -> ProjectError:
        return ProjectError(f"nested {depth} levels deep, over the limit of {self.max_nesting}; the "
                            "server setting max_nesting raises it", file=file, line=line)


    def check_sql_nesting(self, sql: str, file: str) -> None:
        """Refuse SQL nested deeper than `max_nesting` parentheses, before a parser recurses into it
        (quoted text and comments do not count)."""
        depth, deepest, line, at = 0, 0, 1, 1
        i, n = 0, len(sql)
        while i < n:
            c = sql[i]
            if c == "\n":
                line += 1
            elif c in "'\"":
                end = sql.find(c, i + 1)
                while end != -1 and end + 1 < n and sql[end + 1] == c:  # a doubled quote
                    end = sql.find(c, end + 2)
                end = n if end == -1 else end
                line += sql.count("\n", i, end)
                i = end
            elif sql.startswith("--", i):
                end = sql.find("\n", i)
                i = (n if end == -1 else end) - 1
            elif sql.startswith("/*", i):
                end = sql.find("*/", i + 2)
                end = n if end == -1 else end + 1
                line += sql.count("\n", i, end)
                i = end
            elif c == "(":
                depth += 1
                if depth > deepest:
                    deepest, at = depth, line
                    if deepest > self.max_nesting:
                        raise self.too_deep(deepest, file, at)
            elif c == ")":
                depth = max(0, depth - 1)
            i += 1


DEFAULT_LIMITS = Limits()


@contextmanager
def recursion_refused(limits: Limits, file: str) -> Iterator[None]:
    """Turn a parser's RecursionError (input nested deeper than Python's stack) into a one-line
    error naming the file, instead of a traceback."""
    try:
        yield
    except RecursionError:
        raise ProjectError(f"nested too deeply to read (over Python's recursion limit); keep it under "
                           f"{limits.max_nesting} levels (server setting max_nesting)", file=file) from None


def _size(size: int) -> str:
    if size >= MIB:
        return f"{size / MIB:.1f} MiB"
    return f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} bytes"
