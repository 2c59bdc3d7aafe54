"""The effective policy: Sluice's defaults, then the server's policy file, then a repository's
`policies:` section in sluice.yml.

The server is trusted: each key its file sets replaces the default. A repository is not: it may
only make the policy stricter (raise a level or a role or a count, narrow who may override, add
forbidden functions, schemas, freeze windows, custom rules), unless the server lists the rule id
(or `permissions`, or `custom`) in `allowed_overrides`; then the repository's value replaces the
server's, lists included. Anything looser is refused with a `PolicyError` naming the file, the
key and the line.
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from policies.catalog import BUILTIN_RULES, RULE_ID
from policies.cron import FreezeWindow
from policies.document import Document, read_yaml
from policies.errors import PolicyError
from policies.expression import ExpressionError, compile_condition
from policies.findings import RuleSettings
from policies.kinds import (
    COMMON,
    ENVIRONMENT,
    LEVEL,
    OPTIONS,
    ROLE,
    ROLE_LIST,
    TABLE,
    TEXT,
    Names,
    check_keys,
    mapping,
    plain,
    refuse,
)
from policies.roles import role_name
from policies.rules.custom import ENTRY_POINT_GROUP, METADATA_NAMES, CustomRule, PythonRule
from policies.sql import compile_pattern

# The slash commands, each with a permission (bot.commands parses exactly these).
COMMANDS = ("plan", "test", "deploy", "unlock", "destroy", "diff", "lineage", "approve", "rollback", "help")
# sql_allowlist: functions the server adds to the dialect's SQL allowlist (policies/allowlists/);
# a repository extending it would be the repository deciding what its own SQL may reach.
SERVER_ONLY = ("allowed_overrides", "python_rules", "sql_allowlist")
TOP_KEYS = ("allowed_overrides", "python_rules", "permissions", "rules", "custom", "sql_allowlist")
REPOSITORY_FILE = "sluice.yml"
DEFAULT_OVERRIDERS = ("maintainer", "owner")
_PERMISSION_FIELDS = ("default", "protected", "others", "environments")
_CUSTOM_KEYS = ("id", "message", "fix", "level", "override_roles", "forbid", "forbid_functions",
                "require_where_on", "when")


class EntryPointLike(Protocol):
    name: str
    value: str

    def load(self) -> Any: ...


# -- the effective policy ---------------------------------------------------------------------------

@dataclass(frozen=True)
class CommandPermission:
    """The role a command needs. Environment entries and `others` only ever raise it."""

    default: int
    protected: int
    others: int = 0  # acting on another merge request's lock or environment
    environments: Mapping[str, int] = field(default_factory=dict)

    def required(self, environment: str | None, protected: bool, own: bool = True) -> int:
        needed = self.protected if protected else self.default
        if environment is not None:
            needed = max(needed, self.environments.get(environment, 0))
        if not own:
            needed = max(needed, self.others)
        return needed

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"default": role_name(self.default), "protected": role_name(self.protected)}
        if self.others:
            out["others"] = role_name(self.others)
        if self.environments:
            out["environments"] = {e: role_name(r) for e, r in sorted(self.environments.items())}
        return out


@dataclass(frozen=True)
class Policy:
    rules: Mapping[str, RuleSettings]
    permissions: Mapping[str, CommandPermission]
    custom: tuple[CustomRule, ...] = ()
    python_rules: tuple[PythonRule, ...] = ()
    allowed_overrides: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()  # the files it was built from, in order
    repository_changes: tuple[str, ...] = ()  # keys the repository set
    sql_allowlist: tuple[str, ...] = ()  # functions the server adds to the SQL allowlist

    def rule(self, rule_id: str) -> RuleSettings:
        return self.rules[rule_id]

    def _option(self, rule_id: str, key: str) -> Any:
        return self.rules[rule_id].options[key]

    @property
    def forbidden_functions(self) -> tuple[str, ...]:
        return tuple(self._option("forbidden-functions", "functions"))

    @property
    def select_star_schemas(self) -> tuple[str, ...]:
        return tuple(self._option("select-star", "schemas"))

    @property
    def naming(self) -> Mapping[str, tuple[str, ...]]:
        return dict(self._option("naming", "prefixes"))

    @property
    def pii_tags(self) -> tuple[str, ...]:
        return tuple(self._option("pii", "tags"))

    @property
    def public_schemas(self) -> tuple[str, ...]:
        return tuple(self._option("pii", "public_schemas"))

    @property
    def approvals_required(self) -> int:
        return int(self._option("approvals", "required"))

    @property
    def approver_role(self) -> int:
        return int(self._option("approvals", "from_role"))

    @property
    def reset_on_push(self) -> bool:
        """Approvals and overrides count only at the commit they were given at."""
        return bool(self._option("approvals", "reset_on_push"))

    @property
    def untrusted_forks(self) -> bool:
        return bool(self._option("untrusted", "forks"))

    @property
    def trusted_role(self) -> int:
        return int(self._option("untrusted", "trusted_role"))

    @property
    def freeze(self) -> tuple[FreezeWindow, ...]:
        return tuple(self._option("freeze", "windows"))

    def describe(self) -> dict[str, Any]:
        """The effective policy as JSON-able data, recorded with each run."""
        rules: dict[str, Any] = {}
        for rule_id, settings in self.rules.items():
            kinds = OPTIONS.get(rule_id, {}) if settings.kind == "builtin" else {}
            entry: dict[str, Any] = {
                "kind": settings.kind, "level": settings.level,
                "override_roles": [role_name(r) for r in settings.override_roles], "fix": settings.fix,
            }
            for key, value in settings.options.items():
                entry[key] = kinds[key].describe(value) if key in kinds else value
            rules[rule_id] = entry
        return {
            "sources": list(self.sources),
            "allowed_overrides": list(self.allowed_overrides),
            "repository_changes": list(self.repository_changes),
            "permissions": {c: p.describe() for c, p in self.permissions.items()},
            "rules": rules,
            "custom": [rule.describe() for rule in self.custom],
            "python_rules": [{"id": r.id, "source": r.source} for r in self.python_rules],
            "sql_allowlist": list(self.sql_allowlist),
        }


# -- loading ----------------------------------------------------------------------------------------

def load_policy(repository: Mapping[str, Any] | None = None, *, server: Path | str | None = None,
                repository_file: str = REPOSITORY_FILE, repository_lines: Mapping[str, int] | None = None,
                entry_points: Iterable[EntryPointLike] | None = None) -> Policy:
    """The effective policy for one repository.

    `repository` is the `policies:` value of its sluice.yml as loaded (plain dicts, ruamel's
    CommentedMap, or anything with a `lines` mapping of key -> line); `repository_lines` may add
    lines by dotted key (`rules.naming.level`). `server` is the server's policy file; without it,
    the defaults apply. `entry_points` replaces the installed `sluice.policies` entry points.
    """
    builder = _Builder(entry_points)
    default_text = importlib.resources.files("policies").joinpath("default.yml").read_text("utf-8")
    builder.apply(read_yaml(default_text, "policies/default.yml"), Document("policies/default.yml"),
                  trusted=True)
    if server is not None:
        path = Path(server)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError(f"cannot read the server's policy file: {exc}", file=str(path)) from None
        builder.apply(read_yaml(text, str(path)), Document(str(path)), trusted=True)
    if repository is not None:
        if not isinstance(repository, Mapping):
            raise PolicyError("'policies' must be a mapping", file=repository_file, key="policies")
        source = Document(repository_file, "policies.", repository_lines)
        builder.apply(repository, source, trusted=False)
    return builder.build()


def server_sql_allowlist(server: Path | str | None) -> tuple[str, ...]:
    """The functions the server's policy file adds to the SQL allowlist (`sql_allowlist`)."""
    return load_policy(server=server).sql_allowlist if server is not None else ()


# -- merging the layers -----------------------------------------------------------------------------

class _Builder:
    def __init__(self, entry_points: Iterable[EntryPointLike] | None):
        self.entry_points = entry_points
        self.rules: dict[str, dict[str, Any]] = {
            rule_id: {"fix": info.fix} for rule_id, info in BUILTIN_RULES.items()}
        self.kinds: dict[str, str] = dict.fromkeys(BUILTIN_RULES, "builtin")
        self.permissions: dict[str, dict[str, Any]] = {}
        self.custom: dict[str, CustomRule] = {}
        self.python: dict[str, PythonRule] = {}
        self.allowed: tuple[str, ...] = ()
        self.allowed_source: tuple[Document, str] | None = None
        self.sources: list[str] = []
        self.changes: list[str] = []
        self.repository_rules: set[str] = set()  # custom rules the repository itself defines
        self.sql_allowlist: tuple[str, ...] = ()

    def apply(self, data: Mapping[str, Any], src: Document, trusted: bool) -> None:
        src.track(data)
        self.sources.append(src.file)
        check_keys(data, TOP_KEYS, src, "", "a policy")
        if not trusted:
            for key in SERVER_ONLY:
                if key in data:
                    raise src.error(key, f"only the server's policy file may set {key!r}")
        if "allowed_overrides" in data:
            names = Names(RULE_ID, "rule ids").parse(data["allowed_overrides"], src, "allowed_overrides")
            self.allowed = names
            self.allowed_source = (src, "allowed_overrides")
        if "python_rules" in data:
            self._python(data["python_rules"], src)
        if "sql_allowlist" in data:
            self._sql_allowlist(data["sql_allowlist"], src)
        if "custom" in data:
            self._custom(data["custom"], src, trusted)
        for rule_id, settings in mapping(data.get("rules"), src, "rules", "'rules'").items():
            self._rule(str(rule_id), settings, src, trusted)
        for command, value in mapping(data.get("permissions"), src, "permissions", "'permissions'").items():
            self._permission(str(command), value, src, trusted)

    # -- rules ---------------------------------------------------------------------------------------

    def _rule(self, rule_id: str, value: Any, src: Document, trusted: bool) -> None:
        path = f"rules.{rule_id}"
        if rule_id not in self.rules:
            raise src.error(path, f"unknown rule {rule_id!r}; rules: {', '.join(sorted(self.rules))}")
        settings = mapping(value, src, path, f"rule {rule_id!r}")
        kind = self.kinds[rule_id]
        kinds = {**COMMON, **(OPTIONS.get(rule_id, {}) if kind == "builtin" else {})}
        allowed = trusted or rule_id in self.allowed or rule_id in self.repository_rules
        for key, raw in settings.items():
            sub = f"{path}.{key}"
            if key not in kinds:
                if kind == "python" and trusted:
                    self.rules[rule_id].setdefault("options", {})[str(key)] = plain(raw)
                    continue
                raise src.error(sub, f"unknown setting {key!r} for rule {rule_id}; expected one of: "
                                f"{', '.join(kinds)}")
            new = kinds[key].parse(raw, src, sub)
            current = self.rules[rule_id].get(key)
            if not allowed and current is not None:
                new = kinds[key].tighten(current, new, src, sub, rule_id)
            self.rules[rule_id][key] = new
            if not trusted:
                self.changes.append(src.prefix + sub)

    # -- custom rules --------------------------------------------------------------------------------

    def _custom(self, value: Any, src: Document, trusted: bool) -> None:
        if not isinstance(value, list):
            raise src.error("custom", "'custom' must be a list of rules")
        if trusted:
            for rule_id in self.custom:
                del self.rules[rule_id], self.kinds[rule_id]
            self.custom = {}
        seen: set[str] = set()
        for index, item in enumerate(value):
            path = f"custom[{index}]"
            rule, settings = _parse_custom(item, src, path)
            if rule.id in BUILTIN_RULES or rule.id in self.python:
                raise src.error(f"{path}.id", f"{rule.id!r} is the id of a built-in or Python rule")
            if rule.id in seen:
                raise src.error(f"{path}.id", f"custom rule {rule.id!r} is defined twice")
            seen.add(rule.id)
            may_replace = trusted or "custom" in self.allowed or rule.id in self.allowed
            if rule.id in self.custom and not may_replace:
                raise refuse(src, f"{path}.id", rule.id,
                             f"redefine the server's custom rule {rule.id!r}; give yours another id")
            self.custom[rule.id] = rule
            self.rules[rule.id] = settings
            self.kinds[rule.id] = "custom"
            if not trusted:
                self.repository_rules.add(rule.id)
                self.changes.append(f"{src.prefix}{path}")

    # -- the SQL allowlist ---------------------------------------------------------------------------

    def _sql_allowlist(self, value: Any, src: Document) -> None:
        data = mapping(value, src, "sql_allowlist", "'sql_allowlist'")
        check_keys(data, ("functions",), src, "sql_allowlist", "'sql_allowlist'")
        names = data.get("functions") or []
        if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
            raise src.error("sql_allowlist.functions", "expected a list of function names")
        self.sql_allowlist = tuple(dict.fromkeys(n.strip().lower() for n in names))

    # -- Python rules --------------------------------------------------------------------------------

    def _python(self, value: Any, src: Document) -> None:
        names = [value] if value == "*" else value
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise src.error("python_rules", "expected a list of entry-point names (or '*' for all)")
        for rule_id in self.python:
            del self.rules[rule_id], self.kinds[rule_id]
        self.python = {}
        if not names:
            return
        installed = {ep.name: ep for ep in (
            self.entry_points if self.entry_points is not None
            else importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))}
        wanted = sorted(installed) if "*" in names else list(dict.fromkeys(names))
        for name in wanted:
            path = f"python_rules[{names.index(name)}]" if name in names else "python_rules"
            entry = installed.get(name)
            if entry is None:
                raise src.error(path, f"no installed rule {name!r} in the entry-point group "
                                f"{ENTRY_POINT_GROUP!r}; installed: {', '.join(sorted(installed)) or 'none'}")
            if not RULE_ID.match(name) or name in BUILTIN_RULES or name in self.custom:
                raise src.error(path, f"entry point {name!r} cannot be a rule id: it must be lower-case "
                                "letters, digits, '-' and '_' and not a built-in or custom rule's id")
            try:
                check = entry.load()
            except Exception as exc:
                raise src.error(path, f"cannot load rule {name!r} ({entry.value}): "
                                f"{type(exc).__name__}: {exc}") from None
            if not callable(check):
                raise src.error(path, f"rule {name!r} ({entry.value}) is not callable")
            defaults = {"level": getattr(check, "level", "block"),
                        "override_roles": list(getattr(check, "override_roles", DEFAULT_OVERRIDERS)),
                        "fix": getattr(check, "fix", f"See the rule's documentation ({entry.value}).")}
            self.rules[name] = {key: COMMON[key].parse(v, src, path) for key, v in defaults.items()}
            self.kinds[name] = "python"
            self.python[name] = PythonRule(name, entry.value, check)

    # -- permissions ---------------------------------------------------------------------------------

    def _permission(self, command: str, value: Any, src: Document, trusted: bool) -> None:
        path = f"permissions.{command}"
        if command not in COMMANDS:
            raise src.error(path, f"unknown command {command!r}; commands: {', '.join(COMMANDS)}")
        if isinstance(value, str):
            role = ROLE.parse(value, src, path)
            fields: dict[str, Any] = {"default": role, "protected": role}
        else:
            data = mapping(value, src, path, f"permissions for /{command}")
            check_keys(data, _PERMISSION_FIELDS, src, path, f"permissions for /{command}")
            fields = {key: ROLE.parse(data[key], src, f"{path}.{key}")
                      for key in ("default", "protected", "others") if key in data}
            envs = mapping(data.get("environments"), src, f"{path}.environments", "'environments'")
            fields["environments"] = {}
            for env, role_text in envs.items():
                if not isinstance(env, str) or not ENVIRONMENT.match(env) or "__" in env:
                    raise src.error(f"{path}.environments.{env}", f"{env!r} is not an environment name")
                fields["environments"][env] = ROLE.parse(role_text, src, f"{path}.environments.{env}")
        current = self.permissions.setdefault(command, {"environments": {}})
        allowed = trusted or "permissions" in self.allowed
        for key, new in fields.items():
            if key == "environments":
                for env, role in new.items():
                    before = current["environments"].get(env)
                    if not allowed and before is not None and role < before:
                        raise refuse(src, f"{path}.environments.{env}", "permissions",
                                     f"lower the role for /{command} in {env} from {role_name(before)} "
                                     f"to {role_name(role)}")
                    current["environments"][env] = role
                continue
            before = current.get(key)
            if not allowed and before is not None and new < before:
                what = {"default": "", "protected": " to protected environments",
                        "others": " for another merge request"}[key]
                raise refuse(src, f"{path}.{key}" if not isinstance(value, str) else path, "permissions",
                             f"lower the role for /{command}{what} from {role_name(before)} to "
                             f"{role_name(new)}")
            current[key] = new
        if not trusted:
            self.changes.append(src.prefix + path)

    # -- the result ----------------------------------------------------------------------------------

    def build(self) -> Policy:
        if self.allowed_source is not None:
            src, path = self.allowed_source
            known = {*self.rules, "permissions", "custom"}
            for i, name in enumerate(self.allowed):
                if name not in known:
                    raise src.error(f"{path}[{i}]", f"{name!r} is neither a rule id nor 'permissions' "
                                    f"or 'custom'; rules: {', '.join(sorted(self.rules))}")
        rules: dict[str, RuleSettings] = {}
        for rule_id, settings in self.rules.items():
            kind = self.kinds[rule_id]
            options = {k: v for k, v in settings.items() if k not in COMMON and k != "options"}
            options.update(settings.get("options", {}))
            missing = [k for k in ("level", "override_roles") if k not in settings]
            missing += [k for k in OPTIONS.get(rule_id, {}) if kind == "builtin" and k not in settings]
            if missing:
                raise PolicyError(f"rule {rule_id} has no {', '.join(missing)} (the default policy is "
                                  "incomplete)", file="policies/default.yml", key=f"rules.{rule_id}")
            rules[rule_id] = RuleSettings(id=rule_id, level=settings["level"],
                                          override_roles=settings["override_roles"],
                                          fix=settings.get("fix") or f"See the policy's rule {rule_id}.",
                                          kind=kind, options=options)
        permissions = {
            command: CommandPermission(
                default=fields.get("default", 0),
                protected=fields.get("protected", fields.get("default", 0)),
                others=fields.get("others", 0),
                environments=dict(fields.get("environments", {})),
            ) for command, fields in self.permissions.items()}
        return Policy(rules=rules, permissions=permissions, custom=tuple(self.custom.values()),
                      python_rules=tuple(self.python.values()), allowed_overrides=self.allowed,
                      sources=tuple(self.sources), repository_changes=tuple(dict.fromkeys(self.changes)),
                      sql_allowlist=self.sql_allowlist)


def _parse_custom(item: Any, src: Document, path: str) -> tuple[CustomRule, dict[str, Any]]:
    if not isinstance(item, Mapping):
        raise src.error(path, "a custom rule is a mapping with at least 'id' and a condition")
    check_keys(item, _CUSTOM_KEYS, src, path, "a custom rule")
    rule_id = item.get("id")
    if not isinstance(rule_id, str) or not RULE_ID.match(rule_id):
        raise src.error(f"{path}.id", "a custom rule needs an 'id' of lower-case letters, digits, '-' and "
                        "'_' (what `/approve <rule>` names)")
    conditions = [k for k in ("forbid", "forbid_functions", "require_where_on", "when") if k in item]
    if not conditions:
        raise src.error(path, f"custom rule {rule_id!r} needs a condition: forbid, forbid_functions, "
                        "require_where_on or when")
    forbid = None
    if "forbid" in item:
        forbid = TEXT.parse(item["forbid"], src, f"{path}.forbid")
        try:
            compile_pattern(forbid)
        except ValueError as exc:
            raise src.error(f"{path}.forbid", str(exc)) from None
    when = None
    if "when" in item:
        try:
            when = compile_condition(TEXT.parse(item["when"], src, f"{path}.when"), METADATA_NAMES)
        except ExpressionError as exc:
            raise src.error(f"{path}.when", str(exc)) from None
    functions = OPTIONS["forbidden-functions"]["functions"].parse(
        item.get("forbid_functions", []), src, f"{path}.forbid_functions")
    tables = Names(TABLE, "table names").parse(item.get("require_where_on", []), src,
                                               f"{path}.require_where_on")
    message = TEXT.parse(item.get("message", f"breaks custom rule {rule_id}"), src, f"{path}.message")
    rule = CustomRule(id=rule_id, message=message, forbid=forbid, forbid_functions=functions,
                      require_where_on=tables, when=when)
    settings = {
        "level": LEVEL.parse(item.get("level", "block"), src, f"{path}.level"),
        "override_roles": ROLE_LIST.parse(item.get("override_roles", list(DEFAULT_OVERRIDERS)), src,
                                          f"{path}.override_roles"),
        "fix": TEXT.parse(item.get("fix", ""), src, f"{path}.fix"),
    }
    return rule, settings
