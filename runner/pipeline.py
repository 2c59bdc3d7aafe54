"""The merge-request pipeline, one code path for the command line and the bot's worker:
plan against an environment, build what is missing, test, point the environment's views.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from runner.build import BuildResult, Progress, build
from runner.datatests import TestResult, TestRun, run_tests, select_tests
from runner.engines.base import Engine
from runner.environments import Repoint, point, view_namespace
from runner.naming import PRODUCTION, check_environment_name, environment_schema
from runner.plan.builder import make_plan
from runner.plan.definition import Action, Plan
from runner.plan.fingerprint import data_test_fingerprint
from runner.project.nodes import Project
from runner.state.records import BUILD_FAILED, PASSED, TESTS_FAILED, Verdict
from runner.state.store import StateStore


@dataclass
class RunResult:
    plan: Plan
    build: BuildResult = field(default_factory=BuildResult)
    tests: TestRun = field(default_factory=TestRun)
    repoint: Repoint | None = None
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds
    dry_run: bool = False
    held_back: str | None = None  # why the environment's views were not moved

    @property
    def ok(self) -> bool:
        return self.build.ok and self.tests.ok

    @property
    def built(self) -> int:
        return len(self.build.built)

    @property
    def reused(self) -> int:
        return sum(1 for n in self.plan.nodes if n.action is Action.REUSE)


def plan_environment(project: Project, state: StateStore, environment: str,
                     against: str | None = None, selected: Collection[str] | None = None) -> Plan:
    """Compare the project with `against`: by default the environment itself, or production
    when it does not exist yet. A merge request's report compares with production always, so
    it shows everything the MR changes, not only what its last push changed. `selected`: only
    these nodes may change (`make_plan`)."""
    check_environment_name(environment)
    target = state.environment(environment)
    target_models = dict(target.models) if target else {}
    base_name: str | None = against or (environment if target else PRODUCTION)
    if base_name == environment:
        base_models = target_models
        base_name = base_name if target else None
    else:
        other = state.environment(base_name) if base_name else None
        base_models = dict(other.models) if other else {}
        base_name = base_name if other else None
    names = set(project.models) | set(project.seeds) | set(base_models)
    known = state.snapshots(names=names)
    base = {name: known[fp] for name, fp in base_models.items() if fp in known}
    reference = {name: base[name].data_version for name in base}
    return make_plan(project, environment, base_name, base, known, current=target_models,
                     reference_versions=reference, namespace=state.layout.namespace,
                     selected=selected)


def written_schemas(plan: Plan, state: StateStore) -> set[str]:
    """Every schema carrying out the plan writes: physical tables built, and the views of the
    environment (the policy's write-scope rule checks them)."""
    namespace = view_namespace(state, plan.environment)
    schemas = {n.physical_schema for n in plan.to_build}
    schemas |= {environment_schema(n.name.split(".", 1)[0], plan.environment, namespace)
                for n in plan.nodes}
    return schemas


def run_pipeline(project: Project, state: StateStore, engine: Engine, environment: str, *,
                 against: str | None = None,
                 dry_run: bool = False, threads: int | None = None, all_tests: bool = False,
                 progress: Progress | None = None,
                 on_test: Callable[[TestResult], None] | None = None,
                 commit: str | None = None) -> RunResult:
    """Plan `environment`, then carry the plan out (see `execute`)."""
    clock = time.perf_counter()
    plan = plan_environment(project, state, environment, against)
    return execute(plan, project, state, engine, dry_run=dry_run, threads=threads,
                   all_tests=all_tests, progress=progress, on_test=on_test,
                   plan_seconds=time.perf_counter() - clock, commit=commit)


def execute(plan: Plan, project: Project, state: StateStore, engine: Engine, *,
            dry_run: bool = False, threads: int | None = None, all_tests: bool = False,
            progress: Progress | None = None, on_test: Callable[[TestResult], None] | None = None,
            plan_seconds: float = 0.0, commit: str | None = None) -> RunResult:
    """Build what the plan needs, run the tests, and point the environment's views (recording
    `commit`, the commit the project was checked out at, when given).

    A protected environment (production) only moves when every build and test passed; another
    environment moves when the builds passed, so people can look at what failed.
    """
    environment = plan.environment
    result = RunResult(plan=plan, dry_run=dry_run)
    result.timings["plan"] = plan_seconds
    if dry_run:
        return result

    clock = time.perf_counter()
    result.build = build(plan, project, engine, state, threads or project.config.threads, progress)
    result.timings["build"] = time.perf_counter() - clock
    if not result.build.ok:
        result.held_back = "a model failed to build"
        failed = ", ".join(sorted(result.build.failed))
        state.set_verdict(environment, Verdict(BUILD_FAILED, f"{failed} failed to build", commit))
        return result

    clock = time.perf_counter()
    physical = {n.name: (n.physical_schema, n.physical_table) for n in plan.nodes
                if n.action is not Action.DROP}
    # Tests of models whose data changed, and tests that are new or changed themselves.
    changed = None if all_tests or not project.config.test_changed_only else plan.data_changed
    known = state.environment_tests(plan.base) if plan.base else set()
    # A selection leaves models out of the environment: their tests cannot run.
    tests = [t for t in select_tests(project, changed, known)
             if all(d in physical or d in project.sources for d in (t.model, *t.depends_on) if d)]
    result.tests = run_tests(tests, project, engine, physical, on_test)
    result.timings["test"] = time.perf_counter() - clock
    failing = [t.test.name for t in result.tests.failed]
    verdict = (Verdict(PASSED, "", commit) if result.tests.ok else
               Verdict(TESTS_FAILED, f"{len(failing)} tests failed: {', '.join(failing[:5])}", commit))

    if not result.tests.ok and project.config.environment(environment).protected:
        result.held_back = f"tests failed, and {environment} is protected: its views were not moved"
        state.set_verdict(environment, verdict)
        return result
    clock = time.perf_counter()
    if plan.mapping != dict(plan.current):
        result.repoint = point(engine, state, environment, plan.mapping, action="plan", commit=commit)
    if result.tests.ok:  # this version of the environment was tested with these definitions
        state.set_environment_tests(environment, (data_test_fingerprint(t) for t in project.tests))
    state.set_verdict(environment, verdict)
    result.timings["point"] = time.perf_counter() - clock
    return result
