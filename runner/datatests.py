"""Data tests with dbt's semantics: not_null, unique, accepted_values, relationships, singular SQL.

Each test is a query returning the failing rows. It reads the physical tables a plan maps to, so
tests run before an environment's views move, and the same way in every environment.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from runner.engines.base import Engine, TimeLimit
from runner.engines.sandbox import timed_out
from runner.errors import WarehouseError
from runner.naming import table
from runner.plan.fingerprint import data_test_fingerprint
from runner.project.nodes import DataTest, Project
from runner.review.diffvalues import MASK
from runner.review.summary import pii_columns
from runner.rewrite import physical_query

SAMPLE_ROWS = 5


@dataclass(frozen=True)
class TestResult:
    test: DataTest
    failures: int
    columns: tuple[str, ...] = ()
    sample: tuple[tuple[Any, ...], ...] = ()
    error: str | None = None
    seconds: float = 0.0
    sql: str = ""  # the failing-rows query as it ran (kept for failures: the report shows it)
    verdict: str = ""  # "pass" | "warn" | "fail" (dbt's thresholds); "" judged by failures alone

    @property
    def passed(self) -> bool:
        """Passed or only warned: a warning is reported, never a failure."""
        if self.error is not None:
            return False
        return self.verdict in ("pass", "warn") if self.verdict else self.failures == 0

    @property
    def warned(self) -> bool:
        return self.error is None and self.verdict == "warn"


@dataclass
class TestRun:
    results: list[TestResult] = field(default_factory=list)

    @property
    def failed(self) -> list[TestResult]:
        return [r for r in self.results if not r.passed]

    @property
    def passed(self) -> list[TestResult]:
        return [r for r in self.results if r.passed]

    @property
    def warned(self) -> list[TestResult]:
        return [r for r in self.results if r.warned]

    @property
    def ok(self) -> bool:
        return not self.failed


def select_tests(project: Project, changed: Iterable[str] | None,
                 known: Collection[str] | None = None) -> list[DataTest]:
    """The tests to run: all of them (`changed` None), or those touching a model whose data
    changed, plus, with `known` (the test fingerprints the compared environment ran), every test
    whose definition is new or changed, whatever its model's data did."""
    if changed is None:
        return list(project.tests)
    wanted = set(changed)
    return [t for t in project.tests
            if (t.model in wanted) or any(dep in wanted for dep in t.depends_on)
            or (known is not None and data_test_fingerprint(t) not in known)]


def failing_rows_query(test: DataTest, project: Project,
                       physical: Mapping[str, tuple[str, str]]) -> exp.Query:
    if test.sql is not None:  # singular, or as dbt compiled it
        return physical_query(test.sql, project.config.dialect, project.resolve, physical)
    assert test.model is not None and test.column is not None
    model = _relation(test.model, physical)
    column = exp.column(test.column, table="t", quoted=True)
    if test.kind == "not_null":
        return exp.select(exp.Star()).from_(model).where(column.is_(exp.null()))
    if test.kind == "unique":
        return (exp.select(column, exp.alias_(exp.func("count", exp.Star()), "n_records"))
                .from_(model).where(exp.not_(column.is_(exp.null())))
                .group_by(column).having(exp.func("count", exp.Star()) > 1))
    if test.kind == "accepted_values":
        values = [exp.convert(v) for v in test.values]
        return (exp.select(column, exp.alias_(exp.func("count", exp.Star()), "n_records"))
                .from_(model).where(exp.not_(column.isin(*values)))
                .group_by(column))
    if test.kind == "relationships":
        assert test.to is not None and test.field is not None
        parent = _relation(test.to, physical, alias="p")
        parent_field = exp.column(test.field, table="p", quoted=True)
        return (exp.select(column).from_(model)
                .join(parent, on=column.eq(parent_field), join_type="left")
                .where(exp.and_(exp.not_(column.is_(exp.null())), parent_field.is_(exp.null()))))
    raise ValueError(f"unknown test kind {test.kind}")


def _relation(name: str, physical: Mapping[str, tuple[str, str]], alias: str = "t") -> exp.Table:
    schema, name_in_schema = physical.get(name) or tuple(name.split(".", 1))  # sources in place
    relation = table(schema, name_in_schema)
    relation.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
    return relation


def masked_sample(test: DataTest, project: Project, names: list[str],
                  rows: list[tuple[Any, ...]]) -> tuple[tuple[Any, ...], ...]:
    """The failing rows as a report may show them: values of `pii`-tagged columns masked, by the
    rule the data diffs follow (`pii_columns`, `MASK`). A singular test's columns are whatever
    its SQL names them, so when it reads a model with tagged columns every value is masked."""
    read = [name for name in (test.model, *test.depends_on) if name]
    tagged = {c.lower() for name in read for c in pii_columns(project, name)}
    if not tagged:
        return tuple(rows)
    hide = [test.kind == "singular" or n.lower() in tagged for n in names]
    return tuple(tuple(MASK if h and v is not None else v for h, v in zip(hide, row, strict=False))
                 for row in rows)


def _shown(query: exp.Query, project: Project) -> str:
    return query.sql(dialect=project.config.dialect, pretty=True)


def _judged(test: DataTest) -> bool:
    return (test.severity, test.warn_if, test.error_if, test.fail_calc) != ("error", "!= 0", "!= 0",
                                                                            "count(*)")


def _counting_query(test: DataTest, failing: exp.Subquery, dialect: str) -> tuple[exp.Query, bool]:
    """The failures (dbt's `fail_calc`) and, for a test with dbt's thresholds, whether they warn
    and whether they fail: `select fail_calc, fail_calc <warn_if>, fail_calc <error_if>`, as dbt."""
    if not _judged(test):
        return exp.select(exp.func("count", exp.Star())).from_(failing), False
    try:
        calc = sqlglot.parse_one(test.fail_calc, read=dialect)
        warn = sqlglot.parse_one(f"({test.fail_calc}) {test.warn_if}", read=dialect)
        error = sqlglot.parse_one(f"({test.fail_calc}) {test.error_if}", read=dialect)
    except (ParseError, TokenError):
        raise WarehouseError(f"test {test.name}: fail_calc {test.fail_calc!r}, warn_if {test.warn_if!r} "
                             f"or error_if {test.error_if!r} is not SQL") from None
    return exp.select(calc, warn, error).from_(failing), True


def _verdict(test: DataTest, flags: tuple[Any, ...]) -> str:
    should_warn, should_error = (bool(flag) for flag in flags)
    if test.severity == "error" and should_error:
        return "fail"
    return "warn" if should_warn else "pass"


def run_tests(tests: list[DataTest], project: Project, engine: Engine,
              physical: Mapping[str, tuple[str, str]],
              progress: Callable[[TestResult], None] | None = None) -> TestRun:
    run = TestRun()
    for test in tests:
        started = time.perf_counter()
        query = failing_rows_query(test, project, physical)
        failing = (query.limit(test.limit) if test.limit is not None else query).subquery("failing")
        limit = TimeLimit()
        try:
            # A test's query is project SQL too: it stops at the build timeout like a model.
            with engine.time_limit(engine.build_timeout) as limit:
                counting, judged = _counting_query(test, failing, project.config.dialect)
                _, counted = engine.fetch(counting)
                failures = int(counted[0][0] or 0)
                verdict = _verdict(test, counted[0][1:]) if judged else ""
                names: list[str] = []
                rows: list[tuple[Any, ...]] = []
                if failures:
                    sample = (exp.select(exp.Star()).from_(failing.copy())
                              .order_by(exp.Literal.number(1)).limit(SAMPLE_ROWS))
                    names, rows = engine.fetch(sample)
            result = TestResult(test, failures, tuple(names), masked_sample(test, project, names, rows),
                                seconds=time.perf_counter() - started,
                                sql=_shown(query, project) if failures else "", verdict=verdict)
        except WarehouseError as exc:
            error = timed_out(engine.build_timeout) if limit.expired and engine.build_timeout else exc.message
            result = TestResult(test, 0, error=error, seconds=time.perf_counter() - started,
                                sql=_shown(query, project))
        run.results.append(result)
        if progress:
            progress(result)
    return run
