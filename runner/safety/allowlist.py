"""The allowlist of one dialect: reviewed data shipped in `policies/allowlists/<dialect>.yml`, plus
the names the server's policy file adds (`sql_allowlist`). Never read from a repository."""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
from collections.abc import Iterable
from dataclasses import dataclass

from ruamel.yaml import YAML

from runner.engines import DEFAULT_DIALECT
from runner.errors import ProjectError

FOLDER = "allowlists"
SERVER_KEY = "sql_allowlist"


@dataclass(frozen=True)
class Allowlist:
    dialect: str
    functions: frozenset[str]  # scalar, aggregate and window functions
    generators: frozenset[str]  # table functions that read nothing
    syntax: frozenset[str]  # SQL syntax sqlglot models as a call (CAST, CASE, ...)
    system_schemas: frozenset[str]  # qualifiers that name the engine's own functions
    extended: frozenset[str] = frozenset()  # added by the server's policy file

    @functools.cached_property
    def fingerprint(self) -> str:
        """Changes whenever what the list allows changes (a cached verdict is keyed by it)."""
        parts = [self.dialect] + [",".join(sorted(group)) for group in (
            self.functions, self.generators, self.syntax, self.system_schemas, self.extended)]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()

    @property
    def file(self) -> str:
        return f"policies/{FOLDER}/{self.dialect}.yml"

    def allows(self, name: str, table_position: bool = False) -> bool:
        if name in self.generators or name in self.extended:
            return True
        return not table_position and (name in self.functions or name in self.syntax)

    def extend(self, names: Iterable[str]) -> Allowlist:
        extra = frozenset(n.lower() for n in names)
        if not extra:
            return self
        return Allowlist(self.dialect, self.functions, self.generators, self.syntax,
                         self.system_schemas, self.extended | extra)


def load_allowlist(dialect: str, extra: Iterable[str] = ()) -> Allowlist:
    """The dialect's reviewed allowlist, extended by the server's `extra` names."""
    return _shipped(dialect or DEFAULT_DIALECT).extend(extra)


@functools.lru_cache(maxsize=8)
def _shipped(dialect: str) -> Allowlist:
    resource = importlib.resources.files("policies").joinpath(FOLDER, f"{dialect}.yml")
    if not resource.is_file():
        # No reviewed list means nothing is known to be safe on this engine.
        raise ProjectError(f"Sluice has no SQL allowlist for dialect {dialect!r} "
                           f"(policies/{FOLDER}/ holds one file per dialect)", file="sluice.yml")
    data = YAML(typ="safe").load(resource.read_text("utf-8"))

    def names(key: str) -> frozenset[str]:
        return frozenset(str(n).lower() for n in data.get(key) or ())

    return Allowlist(dialect, names("functions"), names("generators"), names("syntax"),
                     names("system_schemas"))
