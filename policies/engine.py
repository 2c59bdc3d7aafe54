"""Run the model rules over a project and weigh findings against `/approve <rule>` overrides."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from policies.catalog import MODEL_RULES
from policies.findings import Finding, RuleSettings
from policies.inputs import Override, ProjectFacts
from policies.roles import role_name, role_names
from policies.rules.base import ModelRule, ModelView
from policies.rules.models import MODEL_RULES as BUILTIN_CHECKS

if TYPE_CHECKING:
    from policies.policy import Policy


@dataclass(frozen=True)
class RefusedOverride:
    override: Override
    reason: str


@dataclass(frozen=True)
class Evaluation:
    findings: tuple[Finding, ...]  # all of them; overridden ones carry `overridden_by`
    applied: tuple[Override, ...] = ()  # overrides that cleared a finding: for the audit log
    refused: tuple[RefusedOverride, ...] = ()  # overrides that did not count, and why

    @property
    def blocking(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.blocking)

    @property
    def warnings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.level == "warn" and f.overridden_by is None)

    @property
    def overridden(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.overridden_by is not None)

    @property
    def ok(self) -> bool:
        return not self.blocking

    @property
    def blocking_labels(self) -> tuple[str, ...]:
        """`rule: subject` of each blocking finding (MergeRequestFacts.blocking_failures)."""
        return tuple(dict.fromkeys(f"{f.rule}: {f.subject}" for f in self.blocking))

    def describe(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "findings": [f.describe() for f in self.findings],
            "applied_overrides": [_override(o) for o in self.applied],
            "refused_overrides": [{**_override(r.override), "reason": r.reason} for r in self.refused],
        }


def evaluate(policy: Policy, project: ProjectFacts, overrides: Iterable[Override] = (), *,
             sha: str | None = None) -> Evaluation:
    """The model rules (built-in, custom, Python) over every model, overrides applied.

    `sha` is the commit evaluated; with `reset_on_push` an override counts only at that commit.
    """
    checks: list[tuple[RuleSettings, ModelRule]] = [
        (policy.rules[rule_id], BUILTIN_CHECKS[rule_id]) for rule_id in MODEL_RULES]
    checks += [(policy.rules[rule.id], rule.check) for rule in policy.custom]
    checks += [(policy.rules[rule.id], rule.check) for rule in policy.python_rules]
    findings: list[Finding] = []
    for facts in sorted(project.models, key=lambda m: m.name):
        view = ModelView.of(facts, project)
        for settings, check in checks:
            if settings.enabled:
                findings += _run(settings, check, policy, view)
    return judge(findings, overrides, sha=sha, reset_on_push=policy.reset_on_push)


def _run(settings: RuleSettings, check: ModelRule, policy: Policy, view: ModelView) -> list[Finding]:
    try:
        found = list(check(settings, policy, view))
        if not all(isinstance(f, Finding) for f in found):
            raise TypeError("a rule must yield Finding objects")
    except Exception as exc:  # a plugin's bug must not hide the other rules' findings
        if settings.kind != "python":
            raise
        return [view.finding(settings, f"rule {settings.id} failed: {type(exc).__name__}: {exc}",
                             fix="Fix the rule's code, or ask the server's admin to disable it.")]
    # The policy decides level and who may override, whatever a rule put in its findings.
    return [replace(f, rule=settings.id, level=settings.level, override_roles=settings.override_roles)
            for f in found]


def judge(findings: Iterable[Finding], overrides: Iterable[Override] = (), *, sha: str | None = None,
          reset_on_push: bool = False) -> Evaluation:
    """Mark the findings that an allowed override covers.

    An override covers a finding of its rule (and of its subject, if it names one) when the
    overrider's role is among the rule's `override_roles`, and, with `reset_on_push`, when it was
    given at `sha`.
    """
    overrides = tuple(overrides)
    judged: list[Finding] = []
    applied: list[Override] = []
    refused: dict[Override, str] = {}
    for finding in findings:
        for override in overrides:
            if override.rule != finding.rule or override.subject not in (None, finding.subject):
                continue
            reason = _refusal(override, finding, sha, reset_on_push)
            if reason is not None:
                refused.setdefault(override, reason)
                continue
            finding = replace(finding, overridden_by=override)
            if override not in applied:
                applied.append(override)
            break
        judged.append(finding)
    return Evaluation(tuple(judged), tuple(applied), tuple(
        RefusedOverride(o, r) for o, r in refused.items() if o not in applied))


def _refusal(override: Override, finding: Finding, sha: str | None, reset_on_push: bool) -> str | None:
    if not finding.override_roles:
        return f"{finding.rule} cannot be overridden"
    if override.role not in finding.override_roles:
        return (f"@{override.by} is {role_name(override.role)}; overriding {finding.rule} needs "
                f"{role_names(finding.override_roles)}")
    if reset_on_push and sha is not None and override.sha != sha:
        return f"given at {override.sha[:12]}; the head is now {sha[:12]}"
    return None


def _override(o: Override) -> dict[str, Any]:
    out: dict[str, Any] = {"rule": o.rule, "by": o.by, "role": role_name(o.role), "sha": o.sha}
    if o.subject is not None:
        out["subject"] = o.subject
    if o.at is not None:
        out["at"] = o.at.isoformat()
    return out
