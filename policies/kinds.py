"""What each kind of policy setting looks like, and what "stricter" means for it.

`parse` reads a YAML value into a plain Python value; `tighten` merges a repository's value over
the server's and raises when the repository's is looser: levels and roles may only go up, who may
override only shrink, lists only grow.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

from policies.cron import CronError, FreezeWindow, check_timezone, parse_cron
from policies.document import Document
from policies.errors import PolicyError
from policies.findings import LEVELS
from policies.roles import ROLES, role_name

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
FUNCTION = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")
TABLE = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*){0,2}$")
ENVIRONMENT = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


class Kind(ABC):
    """One kind of setting: how to read it, merge it and show it."""

    @abstractmethod
    def parse(self, value: Any, src: Document, path: str) -> Any:
        """The setting's value from YAML; raises PolicyError naming `path` when it is wrong."""

    def tighten(self, current: Any, new: Any, src: Document, path: str, rule: str) -> Any:
        """The merged value when a repository sets `new` over `current`; raises when looser."""
        return new

    def describe(self, value: Any) -> Any:
        return value


def refuse(src: Document, path: str, rule: str, what: str) -> PolicyError:
    return src.error(path, f"a repository may not {what}; the server's policy decides this unless its "
                     f"admin lists '{rule}' in allowed_overrides")


class Level(Kind):
    def parse(self, value: Any, src: Document, path: str) -> str:
        if not isinstance(value, str) or value.lower() not in LEVELS:
            raise src.error(path, f"level must be one of {', '.join(LEVELS)}, got {value!r}")
        return value.lower()

    def tighten(self, current: Any, new: Any, src: Document, path: str, rule: str) -> Any:
        if LEVELS.index(new) < LEVELS.index(current):
            raise refuse(src, path, rule, f"lower {rule} from '{current}' to '{new}'")
        return new


class Role(Kind):
    def parse(self, value: Any, src: Document, path: str) -> int:
        if not isinstance(value, str) or value.lower() not in ROLES:
            raise src.error(path, f"expected a role ({', '.join(ROLES)}), got {value!r}")
        return ROLES[value.lower()]

    def tighten(self, current: Any, new: Any, src: Document, path: str, rule: str) -> Any:
        if new < current:
            raise refuse(src, path, rule, f"lower the role from {role_name(current)} to {role_name(new)}")
        return new

    def describe(self, value: Any) -> Any:
        return role_name(value)


class Roles(Kind):
    def parse(self, value: Any, src: Document, path: str) -> tuple[int, ...]:
        if not isinstance(value, list):
            raise src.error(path, f"expected a list of roles ({', '.join(ROLES)}), e.g. [maintainer, owner]")
        return tuple(sorted({Role().parse(v, src, f"{path}[{i}]") for i, v in enumerate(value)}))

    def tighten(self, current: Any, new: Any, src: Document, path: str, rule: str) -> Any:
        added = sorted(set(new) - set(current))
        if added:
            now = ", ".join(role_name(r) for r in current) or "nobody"
            raise refuse(src, path, rule, f"let {', '.join(role_name(r) for r in added)} override "
                         f"{rule} (the server allows {now})")
        return new

    def describe(self, value: Any) -> Any:
        return [role_name(r) for r in value]


class Count(Kind):
    def parse(self, value: Any, src: Document, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100:
            raise src.error(path, f"expected a whole number from 0 to 100, got {value!r}")
        return int(value)

    def tighten(self, current: Any, new: Any, src: Document, path: str, rule: str) -> Any:
        if new < current:
            raise refuse(src, path, rule, f"lower {path.rsplit('.', 1)[-1]} from {current} to {new}")
        return new


class Strict(Kind):
    """A switch whose `true` is the stricter side."""

    def parse(self, value: Any, src: Document, path: str) -> bool:
        if not isinstance(value, bool):
            raise src.error(path, f"expected true or false, got {value!r}")
        return value

    def tighten(self, current: Any, new: Any, src: Document, path: str, rule: str) -> Any:
        if current and not new:
            raise refuse(src, path, rule, f"turn off {path.rsplit('.', 1)[-1]}")
        return new


class Text(Kind):
    def parse(self, value: Any, src: Document, path: str) -> str:
        if not isinstance(value, str):
            raise src.error(path, f"expected text, got {value!r}")
        return str(value).strip()


class Names(Kind):
    """A list a repository can only add to."""

    def __init__(self, pattern: re.Pattern[str], what: str):
        self.pattern = pattern
        self.what = what

    def parse(self, value: Any, src: Document, path: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise src.error(path, f"expected a list of {self.what}")
        names: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not self.pattern.match(item.lower()):
                raise src.error(f"{path}[{i}]", f"{item!r} is not a valid {self.what[:-1]}")
            if item.lower() not in names:
                names.append(item.lower())
        return tuple(names)

    def tighten(self, current: Any, new: Any, src: Document, path: str, rule: str) -> Any:
        return (*current, *(n for n in new if n not in current))

    def describe(self, value: Any) -> Any:
        return list(value)


class Prefixes(Kind):
    """schema -> required name prefixes. A repository may add schemas and narrow a schema's list."""

    def parse(self, value: Any, src: Document, path: str) -> dict[str, tuple[str, ...]]:
        if not isinstance(value, Mapping):
            raise src.error(path, "expected a mapping of schema -> prefixes, e.g. {staging: [stg_]}")
        out: dict[str, tuple[str, ...]] = {}
        for schema, prefixes in value.items():
            sub = f"{path}.{schema}"
            if not isinstance(schema, str) or not IDENTIFIER.match(schema):
                raise src.error(sub, f"{schema!r} is not a schema name")
            items = [prefixes] if isinstance(prefixes, str) else prefixes
            if not isinstance(items, list) or not items or not all(
                    isinstance(p, str) and IDENTIFIER.match(p) for p in items):
                raise src.error(sub, "expected one prefix or a non-empty list, e.g. [fct_, dim_]")
            out[schema] = tuple(dict.fromkeys(str(p) for p in items))
        return out

    def tighten(self, current: Any, new: Any, src: Document, path: str, rule: str) -> Any:
        merged = dict(current)
        for schema, prefixes in new.items():
            if schema in current:
                extra = [p for p in prefixes if p not in current[schema]]
                if extra:
                    raise refuse(src, f"{path}.{schema}", rule, f"accept the prefix(es) {', '.join(extra)} "
                                 f"in {schema} (the server requires {', '.join(current[schema])})")
            merged[schema] = prefixes
        return merged

    def describe(self, value: Any) -> Any:
        return {schema: list(prefixes) for schema, prefixes in value.items()}


class Windows(Kind):
    """Freeze windows; a repository can only add some."""

    def parse(self, value: Any, src: Document, path: str) -> tuple[FreezeWindow, ...]:
        if not isinstance(value, list):
            raise src.error(path, "expected a list of windows, e.g. "
                            "[{cron: '* 16-23 * * 5', timezone: Europe/Berlin, reason: ...}]")
        windows = []
        for i, item in enumerate(value):
            sub = f"{path}[{i}]"
            if not isinstance(item, Mapping):
                raise src.error(sub, "a freeze window is a mapping with cron, timezone, reason")
            check_keys(item, ("cron", "timezone", "reason", "environments"), src, sub, "a freeze window")
            try:
                schedule = parse_cron(TEXT.parse(item.get("cron"), src, f"{sub}.cron"))
            except CronError as exc:
                raise src.error(f"{sub}.cron", str(exc)) from None
            timezone = TEXT.parse(item.get("timezone", "UTC"), src, f"{sub}.timezone")
            try:
                check_timezone(timezone)
            except CronError as exc:
                raise src.error(f"{sub}.timezone", str(exc)) from None
            reason = TEXT.parse(item.get("reason", ""), src, f"{sub}.reason")
            environments = ENVIRONMENTS.parse(item.get("environments", []), src, f"{sub}.environments")
            windows.append(FreezeWindow(schedule, timezone, reason, environments))
        return tuple(windows)

    def tighten(self, current: Any, new: Any, src: Document, path: str, rule: str) -> Any:
        return (*current, *(w for w in new if w not in current))

    def describe(self, value: Any) -> Any:
        return [w.describe() for w in value]


LEVEL, ROLE, ROLE_LIST, TEXT = Level(), Role(), Roles(), Text()
ENVIRONMENTS = Names(ENVIRONMENT, "environment names")
SCHEMAS = Names(IDENTIFIER, "schema names")
COMMON: dict[str, Kind] = {"level": LEVEL, "override_roles": ROLE_LIST, "fix": TEXT}
OPTIONS: dict[str, dict[str, Kind]] = {
    "forbidden-functions": {"functions": Names(FUNCTION, "function names")},
    "select-star": {"schemas": SCHEMAS},
    "naming": {"prefixes": Prefixes()},
    "pii": {"tags": Names(re.compile(r"^[a-z0-9_.:-]+$"), "tags"), "public_schemas": SCHEMAS},
    "approvals": {"required": Count(), "from_role": ROLE, "reset_on_push": Strict()},
    "freeze": {"windows": Windows()},
    "untrusted": {"forks": Strict(), "trusted_role": ROLE},
}


def check_keys(data: Mapping[str, Any], allowed: Iterable[str], src: Document, path: str, what: str) -> None:
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            sub = f"{path}.{key}" if path else str(key)
            raise src.error(sub, f"unknown key {key!r} in {what}; expected one of: {', '.join(allowed)}")


def mapping(value: Any, src: Document, path: str, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise src.error(path, f"{what} must be a mapping")
    return value


def plain(value: Any) -> Any:
    """YAML values as plain JSON-able Python (ruamel's subclasses dropped)."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return str(value)
