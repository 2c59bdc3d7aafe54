"""The merge gate: what merging the merge request will do to production, said before the merge.

It is the promotion rules' verdict (`policies.check_promotion`) in a reviewer's words: "merging
promotes to `prod`", or "merging will not promote: …" with what stands in the way and what to do
about each. The report shows it between markers, so an approval can rewrite just that part, and
the `sluice/promotion` commit status is green exactly when it promotes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from policies.roles import role_names

if TYPE_CHECKING:
    from policies import Evaluation, Finding

PROMOTION_CONTEXT = "sluice/promotion"  # the commit status / check teams make required
OPEN, CLOSE = "<!-- sluice-gate -->", "<!-- /sluice-gate -->"


@dataclass(frozen=True)
class MergeGate:
    environment: str  # what merging promotes: production
    promotes: bool
    reasons: tuple[str, ...] = ()  # what stands in the way, each with what to do
    note: str = ""  # when merging does not concern production at all (another target branch)

    @property
    def line(self) -> str:
        if self.note:
            return self.note
        if self.promotes:
            return f"merging promotes to `{self.environment}`"
        return f"merging will not promote to `{self.environment}`: " + "; ".join(self.reasons)

    @property
    def status(self) -> str:
        """The `sluice/promotion` status description (forges cap it near 140 characters)."""
        text = self.line.replace("`", "")
        return text if len(text) <= 140 else text[:137] + "…"

    @property
    def green(self) -> bool:
        return self.promotes or bool(self.note)


def gate_from(evaluation: Evaluation, environment: str) -> MergeGate:
    """The gate the promotion rules' evaluation for `environment` makes."""
    if evaluation.ok:
        return MergeGate(environment, True)
    return MergeGate(environment, False, tuple(_reason(f) for f in evaluation.blocking))


def not_built(environment: str, why: str) -> MergeGate:
    """Nothing was built that merging could promote (the plan failed, the commit awaits trust)."""
    return MergeGate(environment, False, (why,))


def elsewhere(target_branch: str, production_branch: str, environment: str) -> MergeGate:
    return MergeGate(environment, False, note=f"merging into `{target_branch}` does not touch "
                     f"`{environment}` (it follows `{production_branch}`)")


def _reason(finding: Finding) -> str:
    text = finding.message.rstrip(".")
    if finding.override_roles:
        text += f": `/approve {finding.rule}` ({role_names(finding.override_roles)})"
    return text


def section(gate: MergeGate) -> str:
    """The report's gate part, markers included."""
    icon = "✅" if gate.green else "⛔"
    return f"{OPEN}\n> **Merge gate** (`{PROMOTION_CONTEXT}` {icon}): {gate.line}.\n{CLOSE}\n"


def replace_section(report: str, gate: MergeGate) -> str:
    """`report` with its gate part rewritten (the report unchanged when it has none)."""
    pattern = re.compile(re.escape(OPEN) + r".*?" + re.escape(CLOSE) + r"\n?", re.DOTALL)
    return pattern.sub(lambda _: section(gate), report, count=1)
