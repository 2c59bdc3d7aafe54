"""How one setting of the server configuration is read: from its key in server.yml, or from its
SLUICE_* variable, which wins. Each section (the top level, each forge's) declares its keys as
data, so the loader, the documentation check and the deploy files' check read one list.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runner.errors import SluiceError
from runner.project.yamlfile import YamlMapping

ENV_PREFIX = "SLUICE_"
KINDS = ("text", "int", "float", "bool", "path")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")


class ConfigError(SluiceError):
    """The server configuration is invalid."""


@dataclass(frozen=True)
class Key:
    """One setting: `name` in its section of server.yml, read as `kind`."""

    name: str
    kind: str = "text"

    def variable(self, section: str | None = None) -> str:
        """SLUICE_<NAME> at the top level, SLUICE_<SECTION>_<NAME> in a section."""
        middle = f"{section.upper()}_" if section else ""
        return f"{ENV_PREFIX}{middle}{self.name.upper()}"


# How far merge-request code may go: file sizes, nesting, the report's time (runner.limits.Limits)
# and how the warehouse holds its SQL (runner.engines.sandbox.Sandbox).
LIMIT_KEYS: tuple[Key, ...] = (
    Key("max_model_bytes", "int"), Key("max_yaml_bytes", "int"), Key("max_seed_bytes", "int"),
    Key("max_nesting", "int"), Key("max_yaml_nodes", "int"), Key("report_budget", "float"),
)
SANDBOX_KEYS: tuple[Key, ...] = (
    Key("build_timeout", "float"), Key("duckdb_memory_limit"), Key("duckdb_threads", "int"),
    Key("lock_timeout", "float"), Key("idle_in_transaction_timeout", "float"),
    Key("allow_superuser", "bool"), Key("build_role"),
)


def read_keys(where: YamlMapping, keys: Iterable[Key], environ: Mapping[str, str],
              section: str | None = None) -> dict[str, Any]:
    """The value of every key set in the file or the environment (the environment wins); keys set
    nowhere are left out, so the caller's defaults apply."""
    values: dict[str, Any] = {}
    for key in keys:
        variable = key.variable(section)
        if environ.get(variable):
            values[key.name] = _convert(key, environ[variable], f"the variable {variable}")
        elif where.get(key.name) is not None:
            raw = where[key.name]
            if isinstance(raw, YamlMapping | list):
                raise where.error(key.name, f"{key.name!r} must be a {_kind_words(key.kind)}")
            try:
                values[key.name] = _convert(key, raw, repr(key.name))
            except ConfigError as exc:
                raise where.error(key.name, exc.message) from None
    return values


def _convert(key: Key, value: Any, what: str) -> Any:
    if key.kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ConfigError(f"{what} must be true or false, not {value!r}")
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a {_kind_words(key.kind)}, not {value!r}")
    if key.kind == "int":
        try:
            return int(str(value).strip())
        except ValueError:
            raise ConfigError(f"{what} must be a whole number, not {value!r}") from None
    if key.kind == "float":
        try:
            return float(str(value).strip())
        except ValueError:
            raise ConfigError(f"{what} must be a number, not {value!r}") from None
    if key.kind == "path":
        return Path(str(value))
    return str(value)


def _kind_words(kind: str) -> str:
    return {"text": "string", "int": "whole number", "float": "number", "bool": "true or false",
            "path": "path"}[kind]
