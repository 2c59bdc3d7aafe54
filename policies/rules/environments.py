"""Environment safety: the connection a repository may use, and where an environment may write."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from policies.findings import Finding
from policies.inputs import ConnectionFacts

if TYPE_CHECKING:
    from policies.policy import Policy

PHYSICAL_PREFIX = "sluice__"
PRODUCTION = "prod"


def check_connection(policy: Policy, facts: ConnectionFacts) -> Finding | None:
    rule = policy.rules["connection"]
    if not rule.enabled or facts.requested in facts.allowed or "*" in facts.allowed:
        return None
    allowed = ", ".join(sorted(facts.allowed)) or "none"
    return rule.finding(facts.requested, f"connection {facts.requested!r} is not allowed for this "
                        f"repository (allowed: {allowed})")


def check_write_scope(policy: Policy, schemas: Iterable[str], environment: str, *,
                      physical_prefix: str = PHYSICAL_PREFIX,
                      production: str = PRODUCTION, namespace: str = "") -> tuple[Finding, ...]:
    """Schemas a plan would write that are neither the environment's own nor the physical layer.

    Production's own schemas are the plain names (`marts`); another environment's are
    `<schema>__<environment>` (with the repository's namespace, `<schema>__<namespace>__<environment>`);
    the physical layer is `<physical_prefix><schema>`.
    """
    rule = policy.rules["write-scope"]
    if not rule.enabled:
        return ()
    findings = []
    for schema in sorted(set(schemas)):
        if _own(schema, f"{namespace}__{environment}" if namespace and environment != production
                else environment, physical_prefix, production):
            continue
        findings.append(rule.finding(environment, f"environment {environment} would write to schema "
                                     f"{schema!r}, which belongs to neither it nor the physical layer"))
    return tuple(findings)


def _own(schema: str, environment: str, physical_prefix: str, production: str) -> bool:
    if schema.startswith(physical_prefix) and len(schema) > len(physical_prefix):
        return True
    if environment == production:
        return bool(schema) and "__" not in schema
    base, sep, suffix = schema.partition("__")
    return bool(sep) and suffix == environment and bool(base)
