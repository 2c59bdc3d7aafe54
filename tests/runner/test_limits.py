"""Limits with clear messages (`runner.limits`): each refusal is one line naming the file and the
server setting that raises the limit; the settings come from the server configuration.

- a YAML bomb of 438 bytes is refused in well under a second, before any expansion;
- input deeper than the parser's stack is a one-line error, not a RecursionError traceback;
- a runaway model stops at the build timeout with its file named, and leaves nothing;
- the report's data diffs stop at the report's time budget and say which models were skipped;
- server.yml (or SLUICE_*) sets every limit, and a bad value is refused naming its key.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.config import load_server_config
from bot.configkeys import ConfigError
from runner.engines.duckdb import DuckDBEngine
from runner.engines.sandbox import Sandbox
from runner.errors import ProjectError, SluiceError
from runner.limits import Limits
from runner.pipeline import run_pipeline
from runner.project.yamlfile import parse_yaml
from runner.review.summary import review
from runner.state.store import StateStore
from tests.support.repos import Shop
from tests.support.warehouses import physical_objects

LAUGHS = ('a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
          + "".join(f"{chr(97 + i)}: &{chr(97 + i)} [{','.join([f'*{chr(96 + i)}'] * 9)}]\n"
                    for i in range(1, 9)))


def test_the_billion_laughs_is_refused_within_a_second() -> None:
    assert len(LAUGHS.encode()) <= 438  # expands to 9**9 strings
    started = time.perf_counter()
    with pytest.raises(ProjectError) as refused:
        parse_yaml(LAUGHS, "models/schema.yml")
    assert time.perf_counter() - started < 1.0
    assert str(refused.value).startswith("models/schema.yml:")
    assert "max_yaml_nodes" in str(refused.value) and "\n" not in str(refused.value)


def test_anchors_and_merge_keys_within_the_limit_still_work() -> None:
    doc = parse_yaml("base: &base {materialized: view}\nmodels:\n  - name: orders\n    <<: *base\n", "m.yml")
    assert doc["models"][0]["materialized"] == "view" and doc["models"][0].line_of("materialized") == 3


def test_input_deeper_than_the_parser_can_go_is_one_line(shop: Shop) -> None:
    # With max_nesting raised past what Python's stack allows, the parser's RecursionError is
    # still turned into one line naming the file and the setting.
    shop.write("models/marts/deep.sql", "select " + "(" * 3000 + "1" + ")" * 3000 + " as x\n")
    from runner.project.loader import load_project

    with pytest.raises(ProjectError) as refused:
        load_project(shop.root, limits=Limits(max_nesting=100_000))
    line = str(refused.value)
    assert line.startswith("models/marts/deep.sql: nested too deeply") and "max_nesting" in line
    assert "\n" not in line


def test_a_runaway_model_stops_at_the_build_timeout_and_names_its_file(
        shop: Shop, state: StateStore, tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb", Sandbox(build_timeout=0.5))
    try:
        shop.write("models/marts/runaway.sql", "with recursive r(i) as (select 1 as i union all "
                   "select i + 1 from r where i > 0) select count(*) as n from r\n")
        started = time.perf_counter()
        result = run_pipeline(shop.load(), state, engine, "prod")
        assert time.perf_counter() - started < 20
        assert result.build.failed["marts.runaway"] == (
            "models/marts/runaway.sql: marts.runaway failed to build: stopped after 0.5 s, the build "
            "timeout; the server setting build_timeout raises it")
        assert not [o for o in physical_objects(engine) if o.startswith("sluice__marts.runaway")]
        assert result.build.built  # the other models built
    finally:
        engine.close()


def test_the_report_stops_at_its_time_budget_and_says_what_it_skipped(
        shop: Shop, state: StateStore, duck_warehouse: DuckDBEngine) -> None:
    assert run_pipeline(shop.load(), state, duck_warehouse, "prod").ok
    shop.edit("models/marts/orders.sql", "p.total_amount as amount", "p.total_amount * 2 as amount")
    result = run_pipeline(shop.load(), state, duck_warehouse, "mr_1", against="prod")
    assert result.build.ok

    full = review(result.plan, shop.load(), state, duck_warehouse)
    spent = review(result.plan, shop.load(), state, duck_warehouse, budget=0.0)

    assert full.model("marts.orders").data is not None  # type: ignore[union-attr]
    skipped = [m for m in spent.models if m.data_note.startswith("not diffed: the report's time budget")]
    assert skipped and all(m.data is None for m in skipped)
    assert "the server setting report_budget raises it" in skipped[0].data_note
    assert {m.name for m in skipped} >= {"marts.orders"}


def test_the_server_configuration_sets_every_limit(tmp_path: Path) -> None:
    path = tmp_path / "server.yml"
    path.write_text("max_model_bytes: 2048\nmax_yaml_bytes: 4096\nmax_seed_bytes: 8192\nmax_nesting: 20\n"
                    "max_yaml_nodes: 500\nreport_budget: 30\nbuild_timeout: 60\n"
                    "duckdb_memory_limit: 512MiB\nduckdb_threads: 2\nlock_timeout: 5\n"
                    "idle_in_transaction_timeout: 7\nallow_superuser: true\nbuild_role: ci_builds\n")
    config = load_server_config(path, environ={"SLUICE_BUILD_TIMEOUT": "90"})
    assert config.limits == Limits(max_model_bytes=2048, max_yaml_bytes=4096, max_seed_bytes=8192,
                                   max_nesting=20, max_yaml_nodes=500, report_budget=30.0)
    assert config.sandbox == Sandbox(build_timeout=90.0, memory_limit="512MiB", threads=2, lock_timeout=5.0,
                                     idle_in_transaction_timeout=7.0, untrusted=True, allow_superuser=True,
                                     build_role="ci_builds")
    defaults = load_server_config(None, environ={})
    assert defaults.sandbox.untrusted and not defaults.sandbox.allow_superuser
    assert defaults.sandbox.build_timeout == 900.0 and defaults.limits == Limits()
    assert load_server_config(None, environ={"SLUICE_BUILD_TIMEOUT": "0"}).sandbox.build_timeout is None


@pytest.mark.parametrize(("text", "message"), [
    ("build_timeout: -1\n", "server.yml:1: build_timeout must be a positive number"),
    ("max_nesting: 0\n", "server.yml:1: max_nesting must be a positive number"),
    ("duckdb_memory_limit: \"1GB'; SET x='\"\n", "server.yml:1: duckdb_memory_limit must be a size"),
    ("build_role: \"x; drop role y\"\n", "server.yml:1: build_role 'x; drop role y' is not a plain role"),
    ("allow_superuser: maybe\n", "server.yml:1: 'allow_superuser' must be true or false"),
])
def test_a_bad_limit_is_refused_naming_its_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "server.yml"
    path.write_text(text)
    with pytest.raises((ConfigError, SluiceError)) as refused:
        load_server_config(path, environ={})
    assert str(refused.value).replace(str(path), "server.yml").startswith(message), str(refused.value)


def test_a_runaway_singular_test_stops_at_the_build_timeout(
        shop: Shop, state: StateStore, tmp_path: Path) -> None:
    engine = DuckDBEngine(tmp_path / "w.duckdb", Sandbox(build_timeout=0.5))
    try:
        shop.write("tests/runaway.sql", "with recursive r(i) as (select 1 as i union all "
                   "select i + 1 from r where i > 0) "
                   "select o.id from raw.raw_orders as o join r on o.id = -r.i\n")
        started = time.perf_counter()
        result = run_pipeline(shop.load(), state, engine, "prod")
        assert time.perf_counter() - started < 20
        [failed] = [t for t in result.tests.results if t.test.file == "tests/runaway.sql"]
        assert failed.error == ("stopped after 0.5 s, the build timeout; the server setting build_timeout "
                                "raises it")
        assert result.build.ok and not result.tests.ok
    finally:
        engine.close()
