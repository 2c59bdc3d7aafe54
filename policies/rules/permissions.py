"""Who may run each slash command, per environment; and who may override which rule."""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies.findings import Finding, RuleSettings
from policies.inputs import CommandRequest
from policies.roles import role_name, role_names

if TYPE_CHECKING:
    from policies.policy import Policy

# Refusals are not findings one can override: they come from the permissions table.
_REFUSAL = RuleSettings(id="permission", level="block", override_roles=(),
                        fix="Ask someone with the role the policy names to run the command.")


def authorise(policy: Policy, request: CommandRequest) -> Finding | None:
    """None when the request is allowed, else a blocking finding saying who may do it."""
    command = f"/{request.command}"
    permission = policy.permissions.get(request.command)
    if permission is None:
        return _REFUSAL.finding(command, f"the policy does not say who may run {command}",
                                fix="Ask the server's admin to add the command under `permissions:`.")
    needed = permission.required(request.environment, request.protected, request.own)
    if request.role < needed:
        where = ""
        if request.environment:
            where = f" to {'protected ' if request.protected else ''}environment {request.environment}"
        if not request.own:
            where += " for another merge request"
        return _REFUSAL.finding(command, f"{command}{where} needs {role_name(needed)} access; "
                                f"you have {role_name(request.role)}")
    if request.command == "approve" and request.rule is not None:
        rule = policy.rules.get(request.rule)
        if rule is None:
            known = ", ".join(sorted(policy.rules))
            return _REFUSAL.finding(command, f"there is no rule {request.rule!r}; rules: {known}",
                                    fix="Name the rule as the report shows it.")
        if request.role not in rule.override_roles:
            who = role_names(rule.override_roles)
            return _REFUSAL.finding(
                command, f"overriding {rule.id} needs the role {who}; you have {role_name(request.role)}"
                if rule.override_roles else f"{rule.id} cannot be overridden",
                fix=rule.fix if not rule.override_roles else None)
    return None
