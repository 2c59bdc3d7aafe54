"""The worker's words in a thread: the report comment's marker and fitting, run summaries, policy
findings, and text from a merge request made safe to quote inline."""

from __future__ import annotations

import time

from policies import Finding, role_names
from runner.pipeline import RunResult
from runner.state.locks import Lock

MARKER = "<!-- sluice-report -->"


def answer_marker(event_id: int) -> str:
    """The hidden line that ties a thread comment to the event it answers: a job that runs again
    after a crash (or a lost response) finds it and does not answer twice."""
    return f"<!-- sluice-answer {event_id} -->"
HISTORY_ROOM = 4_000  # characters kept free in the comment for the run history
STATUS_CONTEXT = "sluice"


def quote(text: str) -> str:
    """Inline-code-safe and one line: for text that came from a user, a repository or an error."""
    return text.replace("`", "'").replace("\n", " ")[:200]


def stamp(epoch: float) -> str:
    """A moment as the thread shows it: `2026-05-01 10:02 UTC`."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def span(seconds: float) -> str:
    """A duration in a person's words: `45 s`, `20 min`, `8 h`, `2 d 3 h`."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 120:
        return f"{minutes} min"
    hours = minutes // 60
    return f"{hours} h" if hours < 48 else f"{hours // 24} d {hours % 24} h"


def held(lock: Lock, what: str) -> str:
    """Who holds a lock, since when, until when, and how to release it: one sentence."""
    until = f", until {stamp(lock.expires_at)}" if lock.expires_at is not None else ""
    why = lock.reason or lock.holder
    release = f" To release it: {lock.release}." if lock.release else ""
    return f"{what} is held by {why} since {stamp(lock.since)}{until}.{release}"


def findings(found: tuple[Finding, ...]) -> str:
    return "\n".join(f"- **{f.rule}** ({f.subject}): {quote(f.message)}. Fix: {quote(f.fix)}"
                     + (f" Override: `/approve {f.rule}` by {role_names(f.override_roles)}."
                        if f.override_roles else "")
                     for f in found)


def summary(result: RunResult) -> str:
    if not result.build.ok:
        return f"build failed ({len(result.build.failed)} models)"
    verdict = "ready" if result.tests.ok else "tests failing"
    return (f"{verdict}: {result.built} built, {result.reused} reused, tests "
            f"{len(result.tests.passed)} passed / {len(result.tests.failed)} failed")


def fit(report: str, history: str, limit: int, run_url: str) -> str:
    """The comment: report plus run history, shortened to the forge's limit with a link."""
    tail = f"\n<details><summary>Runs</summary>\n\n{history}\n</details>\n"
    body = report + tail
    if len(body) <= limit:
        return body
    note = f"\n\n… the report was shortened; [read all of it]({run_url}).\n"
    keep = limit - len(tail) - len(note)
    if keep < 200:
        return (report[: limit - len(note)] + note)[:limit]
    cut = report[:keep]
    cut = cut[: cut.rfind("\n")] if "\n" in cut else cut
    if cut.count("<details>") > cut.count("</details>"):
        cut += "\n</details>"
    return cut + note + tail
