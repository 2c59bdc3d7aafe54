"""Untrusted code is not built until a maintainer approves the very commit that will run."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from policies.findings import Finding
from policies.inputs import Approval, MergeRequestFacts, Override
from policies.roles import role_name, role_names

if TYPE_CHECKING:
    from policies.policy import Policy


def is_untrusted(policy: Policy, mr: MergeRequestFacts) -> bool:
    return (policy.untrusted_forks and mr.from_fork) or mr.author_role < policy.trusted_role


def needs_approval(policy: Policy, mr: MergeRequestFacts,
                   approvals: Iterable[Approval | Override] | None = None) -> Finding | None:
    """None when the MR's head may be built; else the finding saying who must approve what.

    Counted: plain approvals and `/approve untrusted` overrides, given at the head SHA, by someone
    other than the author whose role may override `untrusted`. An approval at an older commit does
    not carry over: every push from an untrusted author needs a new look.
    """
    rule = policy.rules["untrusted"]
    if not rule.enabled or not is_untrusted(policy, mr):
        return None
    records: list[Approval | Override] = (
        list(approvals) if approvals is not None else [*mr.approvals, *mr.overrides])
    relevant = [a for a in records if (not isinstance(a, Override) or a.rule == rule.id)
                and a.role in rule.override_roles and _differ(a.by, mr.author)]
    if any(a.sha == mr.head_sha for a in relevant):
        return None
    why = "comes from a fork" if policy.untrusted_forks and mr.from_fork else (
        f"is by @{mr.author}, whose role is {role_name(mr.author_role)} "
        f"(below {role_name(policy.trusted_role)})")
    message = f"this merge request {why}; commit {mr.head_sha[:12]} is not built until approved"
    older = sorted({a.sha[:12] for a in relevant})
    if older:
        message += f" (approvals at {', '.join(older)} do not cover new commits)"
    return rule.finding(mr.head_sha, message,
                        fix=f"Someone with the role {role_names(rule.override_roles)} reviews the "
                        f"changes and comments `/approve` on commit {mr.head_sha[:12]}.")


def _differ(a: str, b: str) -> bool:
    return a.casefold() != b.casefold()
