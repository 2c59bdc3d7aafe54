"""`--format json`: what `plan`, `test`, `promote`, `rollback` and `env list|show` print for scripts.
The keys are stable (README "Scripting"): new keys may appear, none changes meaning or goes away
without a release note."""

from __future__ import annotations

import json
from typing import Any

from runner.datatests import TestResult, TestRun
from runner.environments import Repoint
from runner.pipeline import RunResult
from runner.state.records import EnvironmentRecord, HistoryEntry, SnapshotRecord


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def check(result: TestResult) -> dict[str, Any]:
    return {"name": result.test.name, "kind": result.test.kind, "model": result.test.model,
            "column": result.test.column, "file": result.test.file, "line": result.test.line,
            "passed": result.passed, "failures": result.failures, "error": result.error,
            "seconds": round(result.seconds, 4), "columns": list(result.columns),
            "sample": [list(row) for row in result.sample], "sql": result.sql or None}


def checks(run: TestRun) -> dict[str, Any]:
    return {"passed": len(run.passed), "failed": len(run.failed),
            "results": [check(r) for r in run.results]}


def repoint(result: Repoint | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {"environment": result.environment, "moved": list(result.changed),
            "dropped": list(result.dropped), "unchanged": result.unchanged}


def plan(result: RunResult) -> dict[str, Any]:
    the_plan = result.plan
    return {
        "environment": the_plan.environment, "base": the_plan.base, "dry_run": result.dry_run,
        "ok": result.ok and not result.held_back, "held_back": result.held_back,
        "nodes": [{"name": n.name, "kind": n.kind, "change": n.change.value, "category": n.category,
                   "action": n.action.value, "fingerprint": n.fingerprint, "physical": n.physical,
                   "reason": n.reason, "build_seconds": _seconds(result.build.seconds.get(n.name))}
                  for n in the_plan.nodes],
        "build": {"built": sorted(result.build.built), "failed": dict(sorted(result.build.failed.items())),
                  "skipped": sorted(result.build.skipped)},
        "tests": checks(result.tests), "repoint": repoint(result.repoint),
        "timings": {step: round(seconds, 4) for step, seconds in result.timings.items()},
    }


def environment(record: EnvironmentRecord) -> dict[str, Any]:
    return {"name": record.name, "models": len(record.models), "created_at": record.created_at,
            "updated_at": record.updated_at, "expires_at": record.expires_at}


def environment_detail(record: EnvironmentRecord, rows: list[tuple[str, SnapshotRecord]],
                       history: list[HistoryEntry]) -> dict[str, Any]:
    return {**environment(record),
            "snapshots": [{"model": name, "physical": s.physical, "fingerprint": s.fingerprint,
                           "built_at": s.created_at, "build_seconds": round(s.build_seconds, 4),
                           "reused_from": s.reused_from} for name, s in rows],
            "history": [{"id": h.id, "action": h.action, "source": h.source, "at": h.created_at,
                         "rolled_back": h.rolled_back} for h in history]}


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
