"""Policy-as-code for Sluice: the rule engine, built-in rules and the default policy file.

The caller adapts its own objects into the frozen facts of `policies.inputs`, loads the effective
policy once per run (`load_policy`), and asks the question at hand: `evaluate` (model rules over a
project), `authorise` (slash commands), `needs_approval` (untrusted code), `check_promotion`
(protected environments), `check_connection` and `check_write_scope` (environment safety).
"""

from policies.cron import FreezeWindow, parse_cron
from policies.engine import Evaluation, RefusedOverride, evaluate, judge
from policies.errors import PolicyError
from policies.findings import Finding, RuleSettings
from policies.inputs import (
    Approval,
    ColumnFacts,
    CommandRequest,
    ConnectionFacts,
    MergeRequestFacts,
    ModelFacts,
    Override,
    ProjectFacts,
    propagate_pii,
)
from policies.policy import CommandPermission, Policy, load_policy
from policies.roles import ROLES, Role, role_name, role_names
from policies.rules.environments import check_connection, check_write_scope
from policies.rules.permissions import authorise
from policies.rules.promotion import check_promotion
from policies.rules.trust import needs_approval

__all__ = [
    "ROLES", "Approval", "ColumnFacts", "CommandPermission", "CommandRequest", "ConnectionFacts",
    "Evaluation", "Finding", "FreezeWindow", "MergeRequestFacts", "ModelFacts", "Override", "Policy",
    "PolicyError", "ProjectFacts", "RefusedOverride", "Role", "RuleSettings", "authorise", "check_connection",
    "check_promotion", "check_write_scope", "evaluate", "judge", "load_policy", "needs_approval",
    "parse_cron", "propagate_pii", "role_name", "role_names",
]
