"""The SQL allowlist (runner.safety): what it lets through (real analytics SQL, no false refusals),
what a refusal says, and who may extend it (the server's policy file, never the repository)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from policies import PolicyError, load_policy
from policies.policy import server_sql_allowlist
from runner.errors import ProjectError
from runner.project.loader import load_project
from runner.project.nodes import Names
from runner.safety import check_sql, load_allowlist
from tests.support.paths import DEMO

NAMES = Names.of({"marts.orders": None, "marts.customers": None}, {"raw.raw_payments": None},
                 {"shop.events": None})

# Analytics SQL as data teams write it: none of it may be refused on either dialect.
ANALYTICS = [
    "select coalesce(amount, 0) as a, nullif(status, '') as s, case when amount > 10 then 'big' "
    "else 'small' end as size from marts.orders",
    "select date_trunc('month', order_date) as month, extract(year from order_date) as y, "
    "count(*) as n, count(distinct customer_id) as c, sum(amount) as total, avg(amount) as mean, "
    "min(amount) as lo, max(amount) as hi from marts.orders group by 1, 2",
    "select customer_id, row_number() over (partition by customer_id order by order_date) as rn, "
    "lag(amount) over (partition by customer_id order by order_date) as prev, "
    "lead(amount, 1) over (order by order_date) as next, rank() over (order by amount desc) as r, "
    "dense_rank() over (order by amount) as dr, ntile(4) over (order by amount) as q, "
    "first_value(amount) over w as f, last_value(amount) over w as l, "
    "sum(amount) over (partition by customer_id order by order_date rows between unbounded "
    "preceding and current row) as running from marts.orders window w as (order by order_date)",
    "select string_agg(status, ',' order by status) as s, "
    "percentile_cont(0.5) within group (order by amount) as median, "
    "percentile_disc(0.9) within group (order by amount) as p90 from marts.orders",
    "select cast(amount as decimal(10, 2)) as a, amount::varchar as t, round(amount, 2) as r, "
    "abs(amount) as b, floor(amount) as f, ceil(amount) as c, power(amount, 2) as p, "
    "sqrt(abs(amount)) as q, ln(1 + abs(amount)) as l, mod(order_id, 7) as m from marts.orders",
    "select lower(status) as l, upper(status) as u, trim(status) as t, length(status) as n, "
    "substring(status, 1, 3) as s, replace(status, 'a', 'b') as r, concat(status, '!') as c, "
    "status || '?' as d, left(status, 2) as le, right(status, 2) as ri, lpad(status, 10, ' ') as lp, "
    "split_part(status, '_', 1) as sp, regexp_replace(status, '[aeiou]', '') as rr, "
    "md5(status) as h, status like 'p%' as lk, status ilike 'P%' as ilk from marts.orders",
    "select current_date as today, current_timestamp as now, order_date + interval '1 day' as d, "
    "date_part('dow', order_date) as dow from marts.orders",
    "with recursive days(n) as (select 1 union all select n + 1 from days where n < 31) "
    "select n from days",
    "with paid as (select * from marts.orders where status = 'paid'), big as (select * from paid "
    "where amount > 100) select p.order_id from paid as p left join big as b on p.order_id = "
    "b.order_id where b.order_id is null",
    "select order_id from marts.orders union all select 1 from raw.raw_payments except "
    "select 2 from shop.events",
    "select o.* from marts.orders as o where exists (select 1 from marts.customers as c where "
    "c.customer_id = o.customer_id) and o.order_id in (select 1)",
    "select g.n from generate_series(1, 10) as g(n)",
    "select * from (values (1, 'a'), (2, 'b')) as v(id, name)",
    "select greatest(amount, 0) as g, least(amount, 100) as l, amount between 1 and 2 as b, "
    "amount is distinct from 3 as d, count(*) filter (where amount > 1) over () as f "
    "from marts.orders",
]
DUCKDB_ONLY = [
    "select * from range(10) as r(i)",
    "select unnest([1, 2, 3]) as x, list_transform([1, 2], x -> x + 1) as y, "
    "struct_pack(a := 1) as s, {'k': 1} as m, [1, 2][1] as first",
    "select median(amount) as m, quantile_cont(amount, 0.5) as q, arg_max(order_id, amount) as a, "
    "approx_count_distinct(customer_id) as c, strftime(order_date, '%Y') as y, "
    "date_diff('day', order_date, current_date) as age, epoch(order_date) as e, "
    "regexp_matches(status, 'p.*') as rm, list(status) as l from marts.orders",
    "select * exclude (status) from marts.orders",
    "select columns('amount|status') from marts.orders",
    "select * from marts.orders qualify row_number() over (partition by customer_id "
    "order by order_date) = 1",
    "select * from marts.orders pivot (sum(amount) for status in ('paid', 'open'))",
    "select listagg(status, ',') within group (order by status) as s from marts.orders",
]
POSTGRES_ONLY = [
    "select * from unnest(array[1, 2]) as u(x)",
    "select jsonb_extract_path_text('{\"a\": 1}'::jsonb, 'a') as a, '{\"a\": 1}'::jsonb ->> 'a' "
    "as b, to_char(now(), 'YYYY-MM') as m, age(now(), now()) as g, "
    "date_trunc('week', now()) as w from marts.orders",
    "select t.order_id, g.n from marts.orders as t, lateral generate_series(1, t.order_id) as g(n)",
    "select e.key, e.value from marts.orders as o, jsonb_each('{\"a\": 1}'::jsonb) as e",
    "select pg_catalog.lower(status) as s from marts.orders",
]


@pytest.mark.parametrize("sql", ANALYTICS + DUCKDB_ONLY)
def test_analytics_sql_passes_on_duckdb(sql: str) -> None:
    assert check_sql(sql, "duckdb", NAMES, "models/x.sql") == []


@pytest.mark.parametrize("sql", ANALYTICS + POSTGRES_ONLY)
def test_analytics_sql_passes_on_postgres(sql: str) -> None:
    assert check_sql(sql, "postgres", NAMES, "models/x.sql") == []


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
def test_the_demo_project_loads_in_either_dialect(tmp_path: Path, dialect: str) -> None:
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    config = root / "sluice.yml"
    config.write_text(config.read_text().replace("dialect: duckdb", f"dialect: {dialect}"))
    project = load_project(root)
    assert len(project.models) == 8 and project.tests


def test_a_refusal_names_file_line_function_and_how_to_extend() -> None:
    [refusal] = check_sql("select 1 as a,\n  getenv('HOME') as b", "duckdb", NAMES, "models/x.sql")
    assert str(refusal) == ("models/x.sql:2: function getenv is not allowed (allowlist: "
                            "policies/allowlists/duckdb.yml; a server policy can extend it with "
                            "sql_allowlist)")
    [refusal] = check_sql("select *\nfrom secrets.keys", "postgres", NAMES, "tests/t.sql")
    assert str(refusal).startswith("tests/t.sql:2: table 'secrets.keys' is not a model, a seed or a "
                                   "declared source")
    [refusal] = check_sql("\n\nset search_path = evil", "postgres", NAMES, "models/x.sql")
    assert "statement SET is not allowed" in str(refusal)


def test_line_offset_places_compiled_sql_in_its_file() -> None:
    [refusal] = check_sql("select\n  getenv('HOME') as h", "duckdb", NAMES, "models/x.sql",
                          line_offset=4)
    assert refusal.line == 6


def test_a_declared_source_in_a_system_schema_is_still_refused() -> None:
    names = Names.of({}, {}, {"information_schema.tables": None, "pg_catalog.pg_shadow": None})
    for sql in ("select * from information_schema.tables", "select * from pg_shadow"):
        [refusal] = check_sql(sql, "postgres", names, "models/x.sql")
        assert "part of the engine's catalog" in refusal.message


def test_the_shipped_allowlists_hold_no_function_that_reaches_outside() -> None:
    reaching = {"getenv", "current_setting", "set_config", "pg_read_file", "pg_ls_dir", "lo_import",
                "lo_export", "dblink", "dblink_exec", "nextval", "setval", "currval", "pg_sleep",
                "query_to_xml", "read_csv", "read_text", "read_blob", "glob", "query", "version",
                "current_user", "session_user", "txid_current", "random", "sleep_ms",
                "json_serialize_sql", "getvariable", "inet_server_addr", "ts_rewrite",
                "pg_stat_file", "has_table_privilege", "current_database", "write_log"}
    for dialect in ("duckdb", "postgres"):
        allow = load_allowlist(dialect)
        assert not reaching & (allow.functions | allow.generators | allow.syntax), dialect
        assert {"coalesce", "row_number", "lag", "lead", "date_trunc", "sum", "count"} <= (
            allow.functions | allow.syntax), dialect


def test_a_repository_cannot_extend_the_allowlist() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy({"sql_allowlist": {"functions": ["getenv"]}})
    assert caught.value.file == "sluice.yml" and caught.value.key == "policies.sql_allowlist"
    assert "only the server's policy file may set 'sql_allowlist'" in str(caught.value)


def test_the_servers_policy_file_extends_the_allowlist(tmp_path: Path) -> None:
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    (root / "models" / "marts" / "noise.sql").write_text("select\n  random() as r\n")
    with pytest.raises(ProjectError, match=r"models/marts/noise.sql:2: function random is not"):
        load_project(root)
    server = tmp_path / "policy.yml"
    server.write_text("sql_allowlist:\n  functions: [Random]\n")
    assert server_sql_allowlist(server) == ("random",)
    project = load_project(root, sql_allowlist=server_sql_allowlist(server))
    assert "marts.noise" in project.models
    assert load_policy(server=server).describe()["sql_allowlist"] == ["random"]


def test_a_bad_sql_allowlist_in_the_servers_file_names_its_key(tmp_path: Path) -> None:
    server = tmp_path / "policy.yml"
    server.write_text("sql_allowlist:\n  functions: getenv\n")
    with pytest.raises(PolicyError) as caught:
        server_sql_allowlist(server)
    assert caught.value.key == "sql_allowlist.functions" and caught.value.line == 2


def test_the_canonical_sql_that_runs_is_checked_too(tmp_path: Path) -> None:
    from runner.project.cache import _VERSION as cache_version

    """A parse cache entry is keyed by the file's text; whatever canonical SQL it holds is what
    would be built, so it passes the same check as the file."""
    root, cache = tmp_path / "shop", tmp_path / "cache"
    shutil.copytree(DEMO, root)
    load_project(root, cache_dir=cache)
    entries = json.loads((cache / "parse-cache.json").read_text())
    orders = (root / "models" / "marts" / "orders.sql").read_text()
    key = hashlib.sha256(f"{cache_version}\0duckdb\0{orders}".encode()).hexdigest()  # the cache's own key
    entries[key][0] = "SELECT GETENV('HOME') AS amount"
    (cache / "parse-cache.json").write_text(json.dumps(entries))
    with pytest.raises(ProjectError, match=r"^models/marts/orders.sql: function getenv is not allowed"):
        load_project(root, cache_dir=cache)


def test_a_warm_load_does_not_check_again_what_passed(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The check's passes are cached with the parse (outside the repository), keyed by the body,
    the allowlist and the project's names: a change to either is checked again."""
    import runner.project.loader as loader

    root, cache = tmp_path / "shop", tmp_path / "cache"
    shutil.copytree(DEMO, root)
    load_project(root, cache_dir=cache)
    checked: list[str] = []
    real = loader.check_body

    def counting(*args: object, **kwargs: object) -> object:
        checked.append(str(args[4]))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(loader, "check_body", counting)
    load_project(root, cache_dir=cache)
    assert checked == []
    load_project(root, cache_dir=cache, sql_allowlist=["my_udf"])  # another allowlist
    assert "models/marts/orders.sql" in checked
    checked.clear()
    (root / "models" / "marts" / "extra.sql").write_text("select 1 as x\n")  # other names
    load_project(root, cache_dir=cache)
    assert "models/marts/orders.sql" in checked
    # A body that reads a table the project no longer has is refused, whatever passed before.
    (root / "models" / "marts" / "reader.sql").write_text("select x from marts.extra\n")
    load_project(root, cache_dir=cache)
    (root / "models" / "marts" / "extra.sql").unlink()
    with pytest.raises(ProjectError, match=r"^models/marts/reader.sql.*marts.extra"):
        load_project(root, cache_dir=cache)
