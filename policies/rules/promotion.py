"""What a merge request needs before it reaches a protected environment, and change-freeze windows."""

from __future__ import annotations

from typing import TYPE_CHECKING

from policies.engine import Evaluation, judge
from policies.findings import Finding
from policies.inputs import MergeRequestFacts
from policies.roles import role_name

if TYPE_CHECKING:
    from policies.policy import Policy


def check_promotion(policy: Policy, mr: MergeRequestFacts, environment: str,
                    protected: bool) -> Evaluation:
    """Findings that stand between the MR and `environment`, with the MR's overrides applied.

    Protected environments need approvals, passing tests, no blocking policy finding, acknowledged
    breaking changes and a build of the head commit. Freeze windows apply to the environments they
    name, or to every protected one.
    """
    findings: list[Finding] = []
    if protected:
        findings += _approvals(policy, mr, environment)
        findings += _requirements(policy, mr, environment)
    findings += frozen(policy, environment, protected, mr)
    return judge(findings, mr.overrides, sha=mr.head_sha, reset_on_push=policy.reset_on_push)


def count_approvals(policy: Policy, mr: MergeRequestFacts) -> list[str]:
    """Who approved, counted as the policy says: not the author, the right role, maybe this SHA."""
    people: dict[str, str] = {}
    for approval in mr.approvals:
        if approval.by.casefold() == mr.author.casefold() or approval.role < policy.approver_role:
            continue
        if policy.reset_on_push and approval.sha != mr.head_sha:
            continue
        people.setdefault(approval.by.casefold(), approval.by)
    return sorted(people.values())


def _approvals(policy: Policy, mr: MergeRequestFacts, environment: str) -> list[Finding]:
    rule = policy.rules["approvals"]
    if not rule.enabled:
        return []
    approvers = count_approvals(policy, mr)
    if len(approvers) >= policy.approvals_required:
        return []
    have = f"has {len(approvers)}" + (f": {', '.join('@' + p for p in approvers)}" if approvers else "")
    since = " at the head commit" if policy.reset_on_push else ""
    needed = policy.approvals_required
    return [rule.finding(environment, f"needs {needed} approval{'s' if needed != 1 else ''}{since} from "
                         f"{role_name(policy.approver_role)}s other than @{mr.author} ({have})")]


def _requirements(policy: Policy, mr: MergeRequestFacts, environment: str) -> list[Finding]:
    findings = []
    tests = policy.rules["tests"]
    if tests.enabled and not mr.tests_passed:
        findings.append(tests.finding(environment, "the data tests have not all passed"))
    failures = policy.rules["policy-failures"]
    if failures.enabled and mr.blocking_failures:
        shown = ", ".join(mr.blocking_failures[:10]) + (" …" if len(mr.blocking_failures) > 10 else "")
        findings.append(failures.finding(environment, f"blocking policy findings: {shown}"))
    breaking = policy.rules["breaking"]
    if breaking.enabled and mr.breaking:
        what = ", ".join(f"`{m}`" for m in mr.breaking_models[:5]) + (
            " …" if len(mr.breaking_models) > 5 else "")
        findings.append(breaking.finding(environment, f"the change{' to ' + what if what else ''} is "
                                         "breaking for downstream models and nobody has acknowledged it"))
    stale = policy.rules["stale-build"]
    if stale.enabled and mr.built_sha != mr.head_sha:
        built = mr.built_sha[:12] if mr.built_sha else "nothing"
        findings.append(stale.finding(environment, f"the head commit is {mr.head_sha[:12]} but the "
                                      f"environment was built from {built}"))
    return findings


def frozen(policy: Policy, environment: str, protected: bool, mr: MergeRequestFacts) -> list[Finding]:
    """One finding per freeze window active now that applies to the environment."""
    rule = policy.rules["freeze"]
    if not rule.enabled:
        return []
    findings = []
    for window in policy.freeze:
        if window.applies_to(environment, protected) and window.active(mr.now):
            local = window.local(mr.now).strftime("%a %Y-%m-%d %H:%M")
            reason = f": {window.reason}" if window.reason else ""
            findings.append(rule.finding(environment, f"change freeze{reason} (`{window.schedule.text}` "
                                         f"in {window.timezone}; it is {local} there)"))
    return findings
