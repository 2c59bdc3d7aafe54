"""What a rule reports: a `Finding`, built from the rule's effective `RuleSettings`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from policies.inputs import Override
from policies.roles import role_name

LEVELS = ("off", "warn", "block")  # in order of strictness


@dataclass(frozen=True)
class Finding:
    rule: str
    level: str  # "block" | "warn"
    subject: str  # what it is about: a model name, an environment, a command, a commit
    message: str  # what is wrong
    fix: str  # how to fix it
    override_roles: tuple[int, ...]  # who may `/approve <rule>`; empty: nobody
    path: str | None = None
    line: int | None = None
    overridden_by: Override | None = None

    @property
    def blocking(self) -> bool:
        return self.level == "block" and self.overridden_by is None

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rule": self.rule, "level": self.level, "subject": self.subject,
            "message": self.message, "fix": self.fix,
            "override_roles": [role_name(r) for r in self.override_roles],
        }
        if self.path is not None:
            out["path"] = self.path
        if self.line is not None:
            out["line"] = self.line
        if self.overridden_by is not None:
            o = self.overridden_by
            out["overridden_by"] = {"by": o.by, "role": role_name(o.role), "sha": o.sha}
        return out


@dataclass(frozen=True)
class RuleSettings:
    """One rule as the effective policy configures it."""

    id: str
    level: str
    override_roles: tuple[int, ...]
    fix: str
    kind: str = "builtin"  # "builtin" | "custom" | "python"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def enabled(self) -> bool:
        return self.level != "off"

    def finding(self, subject: str, message: str, *, fix: str | None = None, path: str | None = None,
                line: int | None = None) -> Finding:
        return Finding(rule=self.id, level=self.level, subject=subject, message=message,
                       fix=self.fix if fix is None else fix, override_roles=self.override_roles,
                       path=path, line=line)
