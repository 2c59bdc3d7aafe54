"""Policies applied to merge requests: the effective policy of a repository (server file plus
the `policies:` section of sluice.yml on the production branch — never the MR's own copy), the
approvals and overrides recorded in the audit log, and the decisions built from them."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from bot.config import ServerConfig
from bot.events import Repository
from bot.forges.base import Forge, MergeRequestInfo, Role
from bot.records.audit import AuditLog
from bot.records.runs import RunKind, RunLog, RunStatus
from policies import (
    Approval,
    CommandRequest,
    Evaluation,
    Finding,
    MergeRequestFacts,
    Override,
    Policy,
    PolicyError,
    authorise,
    check_promotion,
    evaluate,
    load_policy,
    needs_approval,
)
from policies.policy import server_sql_allowlist
from runner.checkout import Mirrors
from runner.errors import SluiceError
from runner.naming import PRODUCTION
from runner.policyfacts import project_facts
from runner.project.config import ProjectConfig, parse_project_config
from runner.project.nodes import Project

# Audit actions of approvals given on the forge itself (`approve` is the `/approve` command's).
FORGE_APPROVE = "forge_approve"
FORGE_UNAPPROVE = "forge_unapprove"


class PolicyProblem(SluiceError):
    """The policy itself is invalid: reported in the thread like a project error."""


@dataclass(frozen=True)
class Governed:
    policy: Policy
    base: ProjectConfig | None  # sluice.yml on the production branch, when there is one

    def protected(self, environment: str) -> bool:
        if environment == PRODUCTION:
            return True  # whatever a repository says
        return self.base.environment(environment).protected if self.base else False


class Governance:
    def __init__(self, config: ServerConfig, mirrors: Mirrors, audit: AuditLog, runs: RunLog):
        self.config = config
        self.mirrors = mirrors
        self.audit = audit
        self.runs = runs

    def governed(self, source: tuple[str, str], production_branch: str) -> Governed:
        """`source`: the repository's mirror key and fetch URL."""
        key, url = source
        base: ProjectConfig | None = None
        head = self.mirrors.branch_head(key, url, production_branch)
        text = self.mirrors.read_file(key, url, head, "sluice.yml") if head else None
        if text is not None:
            base = parse_project_config(text)
        try:
            policy = load_policy(base.policies if base else None, server=self.config.policy_file)
        except PolicyError as exc:
            raise PolicyProblem(str(exc)) from None
        return Governed(policy, base)

    def sql_allowlist(self) -> tuple[str, ...]:
        """The functions the server's policy file adds to the SQL allowlist."""
        try:
            return server_sql_allowlist(self.config.policy_file)
        except PolicyError as exc:
            raise PolicyProblem(str(exc)) from None

    # -- what the audit log holds ---------------------------------------------------------------

    def approvals(self, repository: Repository, number: int) -> tuple[Approval, ...]:
        return tuple(Approval(e.actor, int(e.detail.get("role", 0)), e.sha or "",
                              datetime.fromtimestamp(e.at, UTC))
                     for e in self.audit.entries(action="approve", forge=repository.forge,
                                                 repository=repository.full_name, number=number))

    def record_forge_review(self, repository: Repository, number: int, user: str, sha: str,
                            approved: bool) -> None:
        """An approval (or its withdrawal) on the forge, at the head its webhook carried: the
        commit it was given on, for forges whose API does not say (GitLab)."""
        if user and sha:
            self.audit.record(user, FORGE_APPROVE if approved else FORGE_UNAPPROVE,
                              forge=repository.forge, repository=repository.full_name, number=number,
                              sha=sha)

    def forge_approval_commits(self, repository: Repository, number: int) -> dict[str, str]:
        """Each user's latest recorded forge approval: user (case-folded) -> commit."""
        latest: dict[str, str] = {}
        for entry in self.audit.entries(forge=repository.forge, repository=repository.full_name,
                                        number=number, limit=1000):  # newest first
            key = entry.actor.casefold()
            if key not in latest and entry.action in (FORGE_APPROVE, FORGE_UNAPPROVE):
                latest[key] = entry.sha if entry.action == FORGE_APPROVE and entry.sha else ""
        return {user: sha for user, sha in latest.items() if sha}

    def overrides(self, repository: Repository, number: int) -> tuple[Override, ...]:
        return tuple(Override(str(e.detail.get("rule")), e.actor, int(e.detail.get("role", 0)),
                              e.sha or "", e.detail.get("subject"), datetime.fromtimestamp(e.at, UTC))
                     for e in self.audit.entries(action="override", forge=repository.forge,
                                                 repository=repository.full_name, number=number))

    # -- decisions ------------------------------------------------------------------------------

    def refusal(self, governed: Governed, command: str, environment: str | None, role: Role,
                rule: str | None = None, own: bool = True) -> Finding | None:
        request = CommandRequest(command, environment, int(role),
                                 protected=governed.protected(environment) if environment else False,
                                 rule=rule, own=own)
        return authorise(governed.policy, request)

    def facts(self, repository: Repository, number: int, info: MergeRequestInfo, author_role: Role,
              forge: Forge) -> MergeRequestFacts:
        """Everything the promotion and trust rules look at, from the forge, the runs and the
        audit log."""
        last = next((r for r in reversed(self.runs.for_merge_request(repository.forge, repository.full_name,
                                                                     number))
                     if r.kind == RunKind.PIPELINE and r.status in (RunStatus.SUCCESS, RunStatus.FAILED)),
                    None)
        outcome = json.loads(last.policy) if last is not None and last.policy else {}
        approvals = list(self.approvals(repository, number))
        recorded: dict[str, str] | None = None
        for given in forge.approvals(repository.full_name, number):
            sha = given.sha
            if sha is None:
                recorded = self.forge_approval_commits(repository, number) if recorded is None else recorded
                sha = recorded.get(given.user.casefold())
            if not sha:  # no one knows which commit it approved: it trusts none
                continue
            approvals.append(Approval(given.user, int(forge.role(repository.full_name, given.user)), sha))
        return MergeRequestFacts(
            author=info.author, author_role=int(author_role), head_sha=info.head_sha,
            now=datetime.now(UTC), from_fork=info.from_fork,
            built_sha=last.sha if last is not None else None, approvals=tuple(approvals),
            overrides=self.overrides(repository, number),
            tests_passed=bool(outcome.get("tests_passed")), breaking=bool(outcome.get("breaking")),
            breaking_models=tuple(outcome.get("breaking_models", ())),
            blocking_failures=tuple(outcome.get("blocking", ())))

    @staticmethod
    def with_outcome(facts: MergeRequestFacts, outcome: dict[str, Any]) -> MergeRequestFacts:
        """The facts once the run at `facts.head_sha` ended with `outcome` (`Outcome.describe`)."""
        return replace(facts, built_sha=facts.head_sha, tests_passed=bool(outcome["tests_passed"]),
                       breaking=bool(outcome["breaking"]),
                       breaking_models=tuple(outcome["breaking_models"]),
                       blocking_failures=tuple(outcome["blocking"]))

    @staticmethod
    def trust(governed: Governed, facts: MergeRequestFacts) -> Finding | None:
        return needs_approval(governed.policy, facts)

    @staticmethod
    def model_rules(governed: Governed, project: Project, facts: MergeRequestFacts) -> Evaluation:
        return evaluate(governed.policy, project_facts(project), facts.overrides, sha=facts.head_sha)

    @staticmethod
    def promotion(governed: Governed, facts: MergeRequestFacts, environment: str) -> Evaluation:
        return check_promotion(governed.policy, facts, environment, governed.protected(environment))
