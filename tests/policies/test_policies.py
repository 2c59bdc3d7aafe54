"""Policies as code: the default policy, a server file and a repository's `policies:` section make one
effective policy; built-in and custom rules turn facts into findings; overrides clear them."""

from __future__ import annotations

import json
import textwrap
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from policies import (
    Approval,
    ColumnFacts,
    CommandRequest,
    ConnectionFacts,
    MergeRequestFacts,
    ModelFacts,
    Override,
    Policy,
    PolicyError,
    ProjectFacts,
    authorise,
    check_connection,
    check_promotion,
    check_write_scope,
    evaluate,
    load_policy,
    needs_approval,
    parse_cron,
    propagate_pii,
)
from policies.cron import CronError
from policies.expression import ExpressionError, compile_condition
from policies.rules.custom import METADATA_NAMES
from tests.support.paths import REPO

READ, DEVELOPER, MAINTAINER, OWNER = 10, 30, 40, 50
HEAD, OLD = "a" * 40, "b" * 40


# -- helpers ----------------------------------------------------------------------------------------

def model(sql: str = "select order_id, amount from staging.stg_orders", name: str = "marts.orders",
          **kw: Any) -> ModelFacts:
    schema, table = name.split(".")
    defaults: dict[str, Any] = dict(name=name, schema=schema, table=table,
                                    path=f"models/{schema}/{table}.sql", sql=sql, dialect="duckdb",
                                    unique_key=("order_id",),
                                    description="One row per order.")
    defaults.update(kw)
    return ModelFacts(**defaults)


def findings(policy: Policy, *models: ModelFacts, rule: str | None = None, **kw: Any) -> list[Any]:
    found = evaluate(policy, ProjectFacts(models, **kw)).findings
    return [f for f in found if rule is None or f.rule == rule]


def server(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yml"
    path.write_text(textwrap.dedent(text))
    return path


def repo_section(text: str) -> Any:
    """The `policies:` value of a sluice.yml, loaded the way the runner loads it (ruamel, round-trip)."""
    return YAML(typ="rt").load(textwrap.dedent(text))["policies"]


def mr(**kw: Any) -> MergeRequestFacts:
    defaults: dict[str, Any] = dict(
        author="alice", author_role=DEVELOPER, head_sha=HEAD, built_sha=HEAD, tests_passed=True,
        now=datetime(2025, 6, 4, 10, 0, tzinfo=UTC),  # a Wednesday
        approvals=(Approval("bob", DEVELOPER, HEAD),))
    defaults.update(kw)
    return MergeRequestFacts(**defaults)


@pytest.fixture(scope="module")
def default() -> Policy:
    return load_policy()


# -- the default policy -----------------------------------------------------------------------------

def test_default_policy_is_recorded_as_json(default: Policy) -> None:
    described = json.loads(json.dumps(default.describe()))
    assert described["sources"] == ["policies/default.yml"]
    assert described["rules"]["select-star"] == {
        "kind": "builtin", "level": "block", "override_roles": ["maintainer", "owner"],
        "fix": default.rules["select-star"].fix, "schemas": ["marts"]}
    assert described["permissions"]["deploy"] == {"default": "developer", "protected": "maintainer"}
    assert described["rules"]["naming"]["prefixes"] == {"staging": ["stg_"], "intermediate": ["int_"]}


def test_a_demo_like_project_passes_the_defaults(default: Policy) -> None:
    project = (
        model("select id as customer_id, email from raw.raw_customers", "staging.stg_customers",
              unique_key=(), has_unique_test=True, columns=(ColumnFacts("email", ("pii",)),)),
        model("select customer_id, email from staging.stg_customers", "marts.customers",
              unique_key=("customer_id",), columns=(ColumnFacts("email", ("pii",)),)),
        model("select status, count(order_id) as orders from marts.orders group by status",
              "marts.order_status_counts", materialized="view", unique_key=()),
    )
    assert findings(default, *project) == []


# -- single-query: hostile SQL ----------------------------------------------------------------------

@pytest.mark.parametrize("sql, dialect, says", [
    ("drop table marts.orders", "duckdb", "this is DROP"),
    ("create table x as select 1 as a", "duckdb", "this is CREATE"),
    ("insert into marts.orders select 1", "duckdb", "this is INSERT"),
    ("delete from marts.orders", "duckdb", "this is DELETE"),
    ("update marts.orders set amount = 0", "duckdb", "this is UPDATE"),
    ("select 1 as a; drop table marts.orders", "duckdb", "2 statements (SELECT, DROP)"),
    ("select 1 as a; select 2 as a", "duckdb", "2 statements"),
    ("attach 'other.db' as other", "duckdb", "this is ATTACH"),
    ("copy marts.orders to 'orders.csv'", "duckdb", "this is COPY"),
    ("copy (select 1) to program 'id'", "postgres", "this is COPY"),
    ("pragma enable_profiling", "duckdb", "this is PRAGMA"),
    ("set memory_limit = '1GB'", "duckdb", "this is SET"),
    ("install httpfs", "duckdb", "this is INSTALL"),
    ("load httpfs", "duckdb", "this is LOAD"),
    ("select a from read_csv('/etc/passwd')", "duckdb", "read_csv() reaches outside"),
    ("select a from read_csv_auto('x.csv')", "duckdb", "read_csv_auto() reaches outside"),
    ("select a from read_parquet('https://evil.example/x.parquet')", "duckdb", "read_parquet() reaches"),
    ("select a from 'data/x.parquet'", "duckdb", "'data/x.parquet' is a file path or URL"),
    ("select a from glob('/home/*')", "duckdb", "glob() reaches outside"),
    ("select getenv('AWS_SECRET_ACCESS_KEY') as a", "duckdb", "getenv() reaches outside"),
    ("select a from query('drop table t')", "duckdb", "query() reaches outside"),
    ("with r as (select a from read_json('x.json')) select a from r", "duckdb", "read_json() reaches"),
    ("select pg_read_file('/etc/passwd') as a", "postgres", "pg_read_file() reaches outside"),
    ("select a into backup from marts.orders", "postgres", "INTO inside the query"),
    ("with d as (delete from marts.orders returning a) select a from d", "postgres", "DELETE inside"),
    ("select a from marts.orders for update", "postgres", "LOCK inside the query"),
    ('select 1 as "x"; drop table t; --"', "duckdb", "statements (SELECT, DROP"),
    ("", "duckdb", "holds no query"),
    ("-- nothing but a comment", "duckdb", "holds no query"),
    ("select from where (", "duckdb", "does not parse"),
])
def test_single_query_refuses_anything_but_one_select(default: Policy, sql: str, dialect: str,
                                                      says: str) -> None:
    found = findings(default, model(sql, dialect=dialect), rule="single-query")
    assert found, sql
    assert says in found[0].message
    assert found[0].level == "block" and found[0].override_roles == ()
    assert found[0].path == "models/marts/orders.sql"


@pytest.mark.parametrize("sql", [
    "select order_id, amount from staging.stg_orders",
    "with p as (select order_id from staging.stg_payments) select order_id from p",
    'select 1 as "a;b"',  # a semicolon inside a quoted identifier is not a statement separator
    'select 1 as "x""; drop table t; --"',  # an escaped quote keeps the DROP inside the name
    'select "we;ird" as a from "my;table"',
    "select 1 as a; -- a trailing semicolon and a comment",
])
def test_single_query_accepts_one_select_however_quoted(default: Policy, sql: str) -> None:
    assert findings(default, model(sql), rule="single-query") == []


# -- the other SQL and metadata rules ---------------------------------------------------------------

def test_forbidden_functions(tmp_path: Path, default: Policy) -> None:
    assert findings(default, model("select sum(amount) as a from t")) == []
    found = findings(default, model("select pg_sleep(10) as a", dialect="postgres"))
    assert [(f.rule, f.message) for f in found] == [
        ("forbidden-functions", "calls pg_sleep(), which this policy forbids")]
    # A repository adds `random`; sqlglot's function classes catch it however the dialect spells it.
    policy = load_policy(repo_section("""
        policies:
          rules:
            forbidden-functions: {functions: [random]}
    """))
    assert "pg_sleep" in policy.forbidden_functions  # the server's list stays
    assert findings(policy, model("select random() as a"), rule="forbidden-functions")
    assert findings(policy, model("select rand() as a", dialect="mysql"), rule="forbidden-functions")


@pytest.mark.parametrize("sql, flagged", [
    ("select * from staging.stg_orders", True),
    ("select o.* from staging.stg_orders as o", True),
    ("select * exclude (amount) from staging.stg_orders", True),
    ("with final as (select * from staging.stg_orders) select * from final", True),
    ("select a from x union all select * from y", True),
    ("select order_id, count(*) as n from staging.stg_orders group by order_id", False),
    ("with final as (select order_id, amount from staging.stg_orders) select * from final", False),
    ("with a as (select order_id from x), b as (select * from a) select * from b", False),
    ("select order_id from (select * from staging.stg_orders) as s", False),
])
def test_select_star_in_marts(default: Policy, sql: str, flagged: bool) -> None:
    assert bool(findings(default, model(sql), rule="select-star")) is flagged
    # Staging is not a listed layer: the same SQL passes there.
    assert findings(default, model(sql, "staging.stg_orders"), rule="select-star") == []


def test_unique_key(default: Policy) -> None:
    assert findings(default, model(unique_key=()), rule="unique-key")[0].message == (
        "table model marts.orders declares no unique key and has no unique test")
    assert findings(default, model(unique_key=(), has_unique_test=True), rule="unique-key") == []
    assert findings(default, model(unique_key=(), materialized="view"), rule="unique-key") == []
    assert findings(default, model(unique_key=("order_id",)), rule="unique-key") == []


def test_naming_by_layer_warns_and_marts_prefixes_are_opt_in(default: Policy) -> None:
    found = findings(default, model(name="staging.orders_raw"), rule="naming")
    assert [(f.level, f.message) for f in found] == [
        ("warn", "models in schema staging are named `stg_…`; `orders_raw` is not")]
    assert findings(default, model(name="staging.stg_orders"), rule="naming") == []
    assert findings(default, model(name="marts.orders"), rule="naming") == []
    strict = load_policy(repo_section("""
        policies:
          rules:
            naming:
              level: block
              prefixes: {marts: [fct_, dim_]}
    """))
    assert [f.level for f in findings(strict, model(name="marts.orders"), rule="naming")] == ["block"]
    assert findings(strict, model(name="marts.fct_orders"), rule="naming") == []
    assert findings(strict, model(name="staging.orders"), rule="naming")  # the server's layers stay


def test_pii_may_not_reach_public_schemas(default: Policy) -> None:
    customers = model("select customer_id, email from staging.stg_customers", "marts.customers",
                      columns=(ColumnFacts("email", ("pii",)),))
    segments = model("select customer_id, segment from marts.customers", "marts.segments")
    assert findings(default, customers, rule="pii") == []  # no schema is public by default
    public = load_policy({"rules": {"pii": {"public_schemas": ["marts"]}}})
    found = findings(public, customers, segments, rule="pii",
                     pii_flows={"marts.segments": frozenset({"staging.stg_customers.email"})})
    assert [(f.subject, f.message) for f in found] == [
        ("marts.customers", "personal data reaches public schema marts: marts.customers.email"),
        ("marts.segments", "personal data reaches public schema marts: staging.stg_customers.email"),
    ]
    assert findings(public, segments, rule="pii") == []


def test_propagate_pii_follows_column_lineage() -> None:
    flows = propagate_pii(["staging.stg_customers.email"], {
        "staging.stg_customers.email": ["marts.customers.email"],
        "marts.customers.email": ["marts.mailing.address", "marts.customers.email"],
    })
    assert flows == {
        "staging.stg_customers": frozenset({"staging.stg_customers.email"}),
        "marts.customers": frozenset({"staging.stg_customers.email"}),
        "marts.mailing": frozenset({"staging.stg_customers.email"}),
    }


def test_description(default: Policy) -> None:
    found = findings(default, model(description="  "), rule="description")
    assert [(f.level, f.message) for f in found] == [("warn", "model marts.orders has no description")]
    assert findings(default, model(description="Orders."), rule="description") == []


# -- custom rules in YAML ---------------------------------------------------------------------------

def custom(*rules: dict[str, Any]) -> Policy:
    return load_policy({"custom": list(rules)})


def test_custom_pattern_rule() -> None:
    policy = custom({"id": "no-distinct", "forbid": "SELECT DISTINCT", "level": "warn",
                     "message": "SELECT DISTINCT hides duplicates"})
    found = findings(policy, model("select distinct order_id from staging.stg_orders"), rule="no-distinct")
    assert [(f.level, f.message) for f in found] == [
        ("warn", "SELECT DISTINCT hides duplicates "
                 "(found `SELECT DISTINCT order_id FROM staging.stg_orders`)")]
    assert findings(policy, model("select order_id from staging.stg_orders"), rule="no-distinct") == []


def test_custom_pattern_with_wildcards() -> None:
    policy = custom({"id": "no-cross-join", "forbid": "SELECT _ FROM _ CROSS JOIN _"},
                    {"id": "null-compare", "forbid": "_ = NULL"})
    assert findings(policy, model("select a.x from a cross join b"), rule="no-cross-join")
    assert findings(policy, model("select a.x from a join b on a.id = b.id"), rule="no-cross-join") == []
    assert findings(policy, model("select x from a where y = null"), rule="null-compare")
    assert findings(policy, model("select x from a where y is null"), rule="null-compare") == []


def test_custom_require_where_on() -> None:
    policy = custom({"id": "events-filtered", "require_where_on": ["raw.events"],
                     "message": "raw.events is huge: filter it"})
    found = findings(policy, model("select id from raw.events"), rule="events-filtered")
    assert [f.message for f in found] == [
        "raw.events is huge: filter it (reads raw.events without a WHERE clause)"]
    assert findings(policy, model("select id from raw.events where day > '2025-01-01'"),
                    rule="events-filtered") == []
    assert findings(policy, model("select s.id from (select id from raw.events where day = 1) as s"),
                    rule="events-filtered") == []
    assert findings(policy, model("select id from other.events"), rule="events-filtered") == []


def test_custom_forbid_functions_and_metadata_condition() -> None:
    policy = custom(
        {"id": "no-now", "forbid_functions": ["now"], "message": "models must be reproducible"},
        {"id": "marts-are-tables", "when": "schema == 'marts' and materialized == 'view'",
         "message": "marts are tables", "fix": "Set materialized: table."},
        {"id": "staging-distinct", "when": "schema == 'staging'", "forbid": "SELECT DISTINCT _"},
    )
    assert findings(policy, model("select now() as at"), rule="no-now")
    # PostgreSQL's now() is sqlglot's CURRENT_TIMESTAMP, so forbidding one forbids the other there.
    assert findings(policy, model("select current_timestamp as at", dialect="postgres"), rule="no-now")
    assert findings(policy, model("select 1 as at"), rule="no-now") == []
    view = findings(policy, model(materialized="view"), rule="marts-are-tables")
    assert [(f.message, f.fix) for f in view] == [("marts are tables", "Set materialized: table.")]
    assert findings(policy, model(materialized="table"), rule="marts-are-tables") == []
    distinct = "select distinct order_id from x"
    assert findings(policy, model(distinct, "staging.stg_orders"), rule="staging-distinct")
    assert findings(policy, model(distinct, "marts.orders"), rule="staging-distinct") == []


@pytest.mark.parametrize("rule, key, says", [
    ({"id": "bad", "forbid": "SELECT FROM WHERE ((("}, "policies.custom[0].forbid", "does not parse"),
    ({"id": "bad", "when": "name.upper == 'X'"}, "policies.custom[0].when", "attribute access"),
    ({"id": "bad"}, "policies.custom[0]", "needs a condition"),
    ({"id": "Bad Id", "when": "True"}, "policies.custom[0].id", "lower-case"),
    ({"id": "select-star", "when": "True"}, "policies.custom[0].id", "built-in"),
    ({"id": "x", "when": "True", "colour": "red"}, "policies.custom[0].colour", "unknown key"),
])
def test_invalid_custom_rules_are_refused(rule: dict[str, Any], key: str, says: str) -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy({"custom": [rule]})
    assert caught.value.key == key and says in caught.value.message
    assert str(caught.value).startswith(f"sluice.yml: {key}: ")


# -- the safe metadata expression -------------------------------------------------------------------

def test_expression_evaluates_comparisons_membership_and_logic() -> None:
    values = {"name": "marts.orders", "schema": "marts", "materialized": "view", "tags": ("finance",),
              "unique_key": (), "has_unique_test": False, "columns": ("order_id", "email")}
    check = lambda text: compile_condition(text, METADATA_NAMES).evaluate(values)  # noqa: E731
    assert check("schema == 'marts' and materialized == 'view'")
    assert check("schema in ('marts', 'reporting') and not has_unique_test")
    assert check("'email' in columns and 'pii' not in tags")
    assert check("unique_key == () or schema != 'marts'")
    assert not check("schema == 'staging' or materialized == 'table'")
    assert check("-1 < 0 <= 0")
    with pytest.raises(ExpressionError, match="cannot be evaluated"):
        check("schema < 3")


@pytest.mark.parametrize("text, says", [
    ("name.startswith('stg_')", "function calls"),
    ("schema.upper == 'MARTS'", "attribute access"),
    ("name.__class__", "attribute access"),
    ("len(name) > 3", "function calls"),
    ("__import__('os').system('id')", "function calls"),
    ("(lambda: 1)()", "function calls"),
    ("lambda: True", "lambda"),
    ("columns[0] == 'id'", "indexing"),
    ("[c for c in columns]", "comprehensions"),
    ("f'{name}' == 'x'", "f-strings"),
    ("1 + 1 == 2", "arithmetic"),
    ("(x := 1)", "assignment"),
    ("name if schema else table", "'x if c else y'"),
    ("os == 1", "unknown name 'os'"),
    ("__builtins__", "unknown name '__builtins__'"),
    ("b'x' == name", "literal b'x'"),
    ("schema ==", "not a valid condition"),
    ("", "empty"),
    ("x" * 1001, "longer than"),
])
def test_expression_refuses_everything_outside_its_whitelist(text: str, says: str) -> None:
    with pytest.raises(ExpressionError) as caught:
        compile_condition(text, METADATA_NAMES)
    assert says in str(caught.value)


# -- Python rules from entry points -----------------------------------------------------------------

class FakeEntryPoint:
    def __init__(self, name: str, target: Any):
        self.name, self.value, self.target, self.loads = name, f"acme_rules:{name}", target, 0

    def load(self) -> Any:
        self.loads += 1
        return self.target


def no_temp_models(rule: Any, policy: Policy, view: Any) -> Any:
    if view.facts.table.startswith("tmp_"):
        yield view.finding(rule, f"temporary model {view.facts.name} ({rule.options.get('why', '')})")


def test_python_rules_load_only_when_the_server_allows(tmp_path: Path) -> None:
    entry = FakeEntryPoint("no-temp", no_temp_models)
    policy = load_policy(entry_points=[entry])
    assert entry.loads == 0 and "no-temp" not in policy.rules
    path = server(tmp_path, """
        python_rules: [no-temp]
        rules:
          no-temp: {level: warn, why: scratch work}
    """)
    policy = load_policy(server=path, entry_points=[entry])
    assert entry.loads == 1
    found = findings(policy, model(name="marts.tmp_orders"), rule="no-temp")
    assert [(f.level, f.message, f.override_roles) for f in found] == [
        ("warn", "temporary model marts.tmp_orders (scratch work)", (MAINTAINER, OWNER))]
    assert policy.describe()["python_rules"] == [{"id": "no-temp", "source": "acme_rules:no-temp"}]


def test_python_rule_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="no installed rule 'missing'"):
        load_policy(server=server(tmp_path, "python_rules: [missing]\n"), entry_points=[])
    with pytest.raises(PolicyError) as caught:
        load_policy({"python_rules": ["no-temp"]}, entry_points=[])
    assert caught.value.key == "policies.python_rules" and "only the server" in caught.value.message

    def broken(rule: Any, policy: Policy, view: Any) -> Any:
        raise RuntimeError("boom")

    policy = load_policy(server=server(tmp_path, "python_rules: ['*']\n"),
                         entry_points=[FakeEntryPoint("broken", broken)])
    assert [f.message for f in findings(policy, model(), rule="broken")] == [
        "rule broken failed: RuntimeError: boom"]


# -- permissions ------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_, allowed", [
    (CommandRequest("plan", None, DEVELOPER), True),
    (CommandRequest("plan", None, READ), False),
    (CommandRequest("help", None, READ), True),
    (CommandRequest("deploy", "staging", DEVELOPER, protected=False), True),
    (CommandRequest("deploy", "prod", DEVELOPER, protected=True), False),
    (CommandRequest("deploy", "prod", MAINTAINER, protected=True), True),
    (CommandRequest("unlock", "staging", DEVELOPER), True),
    (CommandRequest("unlock", "staging", DEVELOPER, own=False), False),
    (CommandRequest("unlock", "staging", MAINTAINER, own=False), True),
    (CommandRequest("approve", None, DEVELOPER), True),
    (CommandRequest("approve", None, DEVELOPER, rule="select-star"), False),
    (CommandRequest("approve", None, MAINTAINER, rule="select-star"), True),
    (CommandRequest("approve", None, DEVELOPER, rule="breaking"), True),
    (CommandRequest("approve", None, OWNER, rule="single-query"), False),
    (CommandRequest("approve", None, OWNER, rule="no-such-rule"), False),
])
def test_default_permissions(default: Policy, request_: CommandRequest, allowed: bool) -> None:
    refusal = authorise(default, request_)
    assert (refusal is None) is allowed, refusal


def test_permission_refusals_say_who_may(default: Policy) -> None:
    refusal = authorise(default, CommandRequest("deploy", "prod", DEVELOPER, protected=True))
    assert refusal is not None and refusal.rule == "permission" and refusal.override_roles == ()
    assert refusal.message == ("/deploy to protected environment prod needs maintainer access; "
                               "you have developer")
    refusal = authorise(default, CommandRequest("approve", None, DEVELOPER, rule="unique-key"))
    assert refusal is not None
    assert refusal.message == "overriding unique-key needs the role maintainer or owner; you have developer"


def test_permissions_per_environment(tmp_path: Path) -> None:
    path = server(tmp_path, """
        permissions:
          deploy:
            environments: {prod: owner}
    """)
    policy = load_policy(server=path)
    assert authorise(policy, CommandRequest("deploy", "prod", MAINTAINER, protected=True)) is not None
    assert authorise(policy, CommandRequest("deploy", "prod", OWNER, protected=True)) is None
    assert authorise(policy, CommandRequest("deploy", "uat", MAINTAINER, protected=True)) is None
    # A repository may raise requirements: only maintainers plan here.
    raised = load_policy({"permissions": {"plan": "maintainer"}}, server=path)
    assert authorise(raised, CommandRequest("plan", None, DEVELOPER)) is not None


# -- config: a repository cannot loosen the server --------------------------------------------------

SERVER_POLICY = """\
rules:
  approvals:
    required: 2
    reset_on_push: true
custom:
  - id: marts-are-tables
    when: "schema == 'marts' and materialized == 'view'"
"""


@pytest.mark.parametrize("section, key, says", [
    ("rules: {select-star: {level: warn}}", "rules.select-star.level",
     "lower select-star from 'block' to 'warn'"),
    ("rules: {single-query: {level: 'off'}}", "rules.single-query.level", "from 'block' to 'off'"),
    ("rules: {approvals: {required: 1}}", "rules.approvals.required", "lower required from 2 to 1"),
    ("rules: {approvals: {from_role: read}}", "rules.approvals.from_role", "from developer to read"),
    ("rules: {approvals: {reset_on_push: false}}", "rules.approvals.reset_on_push", "turn off reset_on_push"),
    ("rules: {select-star: {override_roles: [developer, maintainer, owner]}}",
     "rules.select-star.override_roles", "let developer override select-star"),
    ("rules: {naming: {prefixes: {staging: [stg_, src_]}}}", "rules.naming.prefixes.staging",
     "accept the prefix(es) src_ in staging"),
    ("rules: {untrusted: {forks: false}}", "rules.untrusted.forks", "turn off forks"),
    ("rules: {untrusted: {trusted_role: read}}", "rules.untrusted.trusted_role", "from developer to read"),
    ("rules: {marts-are-tables: {level: warn}}", "rules.marts-are-tables.level", "from 'block' to 'warn'"),
    ("permissions: {deploy: {protected: developer}}", "permissions.deploy.protected",
     "lower the role for /deploy to protected environments from maintainer to developer"),
    ("permissions: {plan: read}", "permissions.plan", "lower the role for /plan from developer to read"),
    ("permissions: {unlock: {others: developer}}", "permissions.unlock.others", "for another merge request"),
    ("custom: [{id: marts-are-tables, when: 'False'}]", "custom[0].id", "redefine the server's custom rule"),
    ("allowed_overrides: [naming]", "allowed_overrides", "only the server's policy file"),
    ("python_rules: [acme]", "python_rules", "only the server's policy file"),
])
def test_a_repository_cannot_loosen_the_server(tmp_path: Path, section: str, key: str, says: str) -> None:
    text = "name: shop\npolicies:\n" + textwrap.indent(section, "  ") + "\n"
    with pytest.raises(PolicyError) as caught:
        load_policy(repo_section(text), server=server(tmp_path, SERVER_POLICY), entry_points=[])
    error = caught.value
    assert error.key == f"policies.{key}"
    assert says in error.message
    assert error.file == "sluice.yml" and error.line == 3  # the line of the offending key
    assert str(error).startswith(f"sluice.yml:3: policies.{key}: ")


def test_a_repository_may_tighten(tmp_path: Path) -> None:
    policy = load_policy(repo_section("""
        policies:
          rules:
            approvals: {required: 3, from_role: maintainer}
            select-star: {schemas: [staging], override_roles: [owner]}
            forbidden-functions: {functions: [random]}
            pii: {public_schemas: [marts]}
            freeze:
              windows:
                - {cron: "* * 24-31 12 *", timezone: Europe/Berlin, reason: holidays}
            naming: {prefixes: {staging: [stg_], marts: [fct_, dim_]}}
          permissions:
            deploy: {environments: {prod: owner}}
          custom:
            - {id: repo-rule, when: "schema == 'tmp'"}
    """), server=server(tmp_path, SERVER_POLICY))
    assert policy.approvals_required == 3 and policy.approver_role == MAINTAINER
    assert policy.select_star_schemas == ("marts", "staging")  # lists add to the server's
    assert policy.rules["select-star"].override_roles == (OWNER,)
    assert policy.forbidden_functions[-1] == "random" and "pg_sleep" in policy.forbidden_functions
    assert policy.public_schemas == ("marts",)
    assert [w.reason for w in policy.freeze] == ["holidays"]
    assert policy.naming == {"staging": ("stg_",), "intermediate": ("int_",), "marts": ("fct_", "dim_")}
    assert [r.id for r in policy.custom] == ["marts-are-tables", "repo-rule"]
    assert policy.permissions["deploy"].required("prod", True) == OWNER
    described = policy.describe()
    assert described["sources"][1:] == [str(tmp_path / "policy.yml"), "sluice.yml"]
    assert "policies.rules.approvals.required" in described["repository_changes"]
    json.dumps(described)


def test_a_repository_may_loosen_its_own_custom_rules(tmp_path: Path) -> None:
    policy = load_policy({"custom": [{"id": "repo-rule", "when": "schema == 'tmp'"}],
                          "rules": {"repo-rule": {"level": "warn", "override_roles": ["developer"]}}},
                         server=server(tmp_path, SERVER_POLICY))
    assert policy.rules["repo-rule"].level == "warn"
    assert policy.rules["repo-rule"].override_roles == (DEVELOPER,)


def test_allowed_overrides_let_a_repository_replace_a_setting(tmp_path: Path) -> None:
    path = server(tmp_path, """
        allowed_overrides: [naming, forbidden-functions, permissions]
    """)
    policy = load_policy({
        "rules": {"naming": {"level": "off", "prefixes": {"staging": ["src_"]}},
                  "forbidden-functions": {"functions": ["random"]}},
        "permissions": {"deploy": {"protected": "developer"}},
    }, server=path)
    assert policy.rules["naming"].level == "off"
    assert policy.naming == {"staging": ("src_",)}
    assert policy.forbidden_functions == ("random",)  # replaced, not added to
    assert authorise(policy, CommandRequest("deploy", "prod", DEVELOPER, protected=True)) is None
    with pytest.raises(PolicyError, match="lower select-star"):  # still not allowed
        load_policy({"rules": {"select-star": {"level": "warn"}}}, server=path)


def test_line_numbers_from_a_runner_style_mapping_and_explicit_lines() -> None:
    class Lined(dict[str, Any]):  # like runner.project.yamlfile.YamlMapping: a dict with the line of each key
        def __init__(self, items: dict[str, Any], lines: dict[str, int], line: int):
            super().__init__(items)
            self.lines, self.line = lines, line

    section = Lined({"rules": Lined({"naming": Lined({"level": "nonsense"}, {"level": 14}, 14)},
                                    {"naming": 13}, 13)}, {"rules": 12}, 11)
    with pytest.raises(PolicyError) as caught:
        load_policy(section)
    assert (caught.value.line, caught.value.key) == (14, "policies.rules.naming.level")
    with pytest.raises(PolicyError) as caught:
        load_policy({"rules": {"naming": {"level": "nonsense"}}}, repository_lines={"rules.naming": 7})
    assert caught.value.line == 7  # the nearest key that has a line


@pytest.mark.parametrize("text, key, line, says", [
    ("rules:\n  naming:\n    level: loud\n", "rules.naming.level", 3, "level must be one of"),
    ("rules:\n  nmaing: {level: warn}\n", "rules.nmaing", 2, "unknown rule 'nmaing'"),
    ("rules:\n  naming: {colour: red}\n", "rules.naming.colour", 2, "unknown setting 'colour'"),
    ("rules:\n  select-star:\n    override_roles: [admin]\n", "rules.select-star.override_roles[0]", 3,
     "expected a role"),
    ("permisions: {}\n", "permisions", 1, "unknown key 'permisions'"),
    ("permissions:\n  merge: owner\n", "permissions.merge", 2, "unknown command 'merge'"),
    ("allowed_overrides: [nmaing]\n", "allowed_overrides[0]", 1, "neither a rule id"),
    ("rules:\n  freeze:\n    windows:\n      - {cron: '* * * *'}\n", "rules.freeze.windows[0].cron", 4,
     "has 4"),
    ("rules:\n  freeze:\n    windows:\n      - {cron: '* * * * *', timezone: Mars/Olympus}\n",
     "rules.freeze.windows[0].timezone", 4, "unknown time zone"),
    ("rules: {approvals: {required: yes}}\n", "rules.approvals.required", 1, "whole number"),
    ("rules: [a, b]\n", "rules", 1, "must be a mapping"),
])
def test_invalid_server_policy(tmp_path: Path, text: str, key: str, line: int, says: str) -> None:
    path = server(tmp_path, text)
    with pytest.raises(PolicyError) as caught:
        load_policy(server=path)
    assert (caught.value.file, caught.value.key, caught.value.line) == (str(path), key, line)
    assert says in caught.value.message


def test_server_yaml_errors(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="invalid YAML") as caught:
        load_policy(server=server(tmp_path, "rules:\n  naming: {level: warn\n"))
    assert caught.value.line is not None
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(server=tmp_path / "missing.yml")


# -- overrides --------------------------------------------------------------------------------------

def test_overrides_clear_findings_only_for_allowed_roles(default: Policy) -> None:
    star = model("select * from staging.stg_orders")
    other = model("select * from staging.stg_customers", "marts.customers")
    project = ProjectFacts((star, other))
    by_dev = Override("select-star", "dave", DEVELOPER, HEAD)
    by_maintainer = Override("select-star", "mia", MAINTAINER, HEAD, subject="marts.orders")
    result = evaluate(default, project, [by_dev, by_maintainer])
    assert [(f.subject, f.overridden_by) for f in result.findings] == [
        ("marts.customers", None), ("marts.orders", by_maintainer)]
    assert result.blocking_labels == ("select-star: marts.customers",)
    assert result.applied == (by_maintainer,)
    assert [(r.override, r.reason) for r in result.refused] == [
        (by_dev, "@dave is developer; overriding select-star needs maintainer or owner")]
    assert not result.ok
    everything = evaluate(default, project, [replace(by_maintainer, subject=None)])
    assert everything.ok and len(everything.overridden) == 2


def test_some_rules_cannot_be_overridden(default: Policy) -> None:
    result = evaluate(default, ProjectFacts((model("drop table x"),)),
                      [Override("single-query", "olga", OWNER, HEAD)])
    assert not result.ok
    assert result.refused[0].reason == "single-query cannot be overridden"


def test_overrides_reset_on_push_when_configured() -> None:
    policy = load_policy({"rules": {"approvals": {"reset_on_push": True}}})
    project = ProjectFacts((model("select * from x"),))
    stale = Override("select-star", "mia", MAINTAINER, OLD)
    result = evaluate(policy, project, [stale], sha=HEAD)
    assert not result.ok and "the head is now" in result.refused[0].reason
    assert evaluate(policy, project, [replace(stale, sha=HEAD)], sha=HEAD).ok


# -- promotion to protected environments ------------------------------------------------------------

def test_promotion_passes_with_everything_in_place(default: Policy) -> None:
    result = check_promotion(default, mr(), "prod", protected=True)
    assert result.ok and result.findings == ()


@pytest.mark.parametrize("changes, rule, says", [
    ({"approvals": ()}, "approvals", "needs 1 approval from developers other than @alice (has 0)"),
    ({"approvals": (Approval("alice", MAINTAINER, HEAD),)}, "approvals", "has 0"),
    ({"approvals": (Approval("rita", READ, HEAD),)}, "approvals", "has 0"),
    ({"tests_passed": False}, "tests", "the data tests have not all passed"),
    ({"blocking_failures": ("select-star: marts.orders",)}, "policy-failures", "select-star: marts.orders"),
    ({"breaking": True}, "breaking", "breaking for downstream models"),
    ({"breaking": True, "breaking_models": ("marts.orders",)}, "breaking",
     "the change to `marts.orders` is breaking for downstream models"),
    ({"built_sha": OLD}, "stale-build", f"built from {OLD[:12]}"),
    ({"built_sha": None}, "stale-build", "built from nothing"),
])
def test_promotion_requirements(default: Policy, changes: dict[str, Any], rule: str, says: str) -> None:
    result = check_promotion(default, mr(**changes), "prod", protected=True)
    assert [f.rule for f in result.blocking] == [rule]
    assert says in result.blocking[0].message
    # An unprotected environment asks for none of it.
    assert check_promotion(default, mr(**changes), "staging", protected=False).ok


def test_promotion_overrides(default: Policy) -> None:
    ack = Override("breaking", "alice", DEVELOPER, HEAD)
    assert check_promotion(default, mr(breaking=True, overrides=(ack,)), "prod", True).ok
    tests_by_dev = Override("tests", "dave", DEVELOPER, HEAD)
    result = check_promotion(default, mr(tests_passed=False, overrides=(tests_by_dev,)), "prod", True)
    assert not result.ok and result.refused[0].override == tests_by_dev
    tests_by_maintainer = Override("tests", "mia", MAINTAINER, HEAD)
    result = check_promotion(default, mr(tests_passed=False, overrides=(tests_by_maintainer,)), "prod", True)
    assert result.ok and result.applied == (tests_by_maintainer,)
    # Approvals cannot be overridden, only given.
    approvals = Override("approvals", "olga", OWNER, HEAD)
    assert not check_promotion(default, mr(approvals=(), overrides=(approvals,)), "prod", True).ok


def test_promotion_approvals_counted_per_policy() -> None:
    two = load_policy({"rules": {"approvals": {"required": 2, "reset_on_push": True}}})
    approvals = (Approval("bob", DEVELOPER, HEAD), Approval("BOB", DEVELOPER, HEAD),
                 Approval("carol", MAINTAINER, OLD))
    result = check_promotion(two, mr(approvals=approvals), "prod", True)
    assert [f.message for f in result.blocking] == [
        "needs 2 approvals at the head commit from developers other than @alice (has 1: @bob)"]
    fresh = (*approvals[:2], Approval("carol", MAINTAINER, HEAD))
    assert check_promotion(two, mr(approvals=fresh), "prod", True).ok


# -- freeze windows ---------------------------------------------------------------------------------

def berlin(text: str) -> datetime:
    from zoneinfo import ZoneInfo

    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo("Europe/Berlin"))


FRIDAY_EVENING = {"rules": {"freeze": {"windows": [
    {"cron": "* 16-23 * * 5", "timezone": "Europe/Berlin", "reason": "no Friday evening deploys"}]}}}


@pytest.mark.parametrize("now, frozen", [
    (berlin("2025-06-06T17:30"), True),  # Friday, summer time
    (berlin("2025-06-06T16:00"), True),
    (berlin("2025-06-06T23:59"), True),
    (berlin("2025-06-06T15:59"), False),
    (berlin("2025-06-07T00:00"), False),  # Saturday
    (berlin("2025-06-05T17:30"), False),  # Thursday
    (datetime(2025, 6, 6, 14, 30, tzinfo=UTC), True),  # 16:30 in Berlin (UTC+2)
    (datetime(2025, 6, 6, 13, 30, tzinfo=UTC), False),  # 15:30 in Berlin
    (datetime(2025, 1, 10, 15, 30, tzinfo=UTC), True),  # winter: 16:30 in Berlin (UTC+1)
    (datetime(2025, 1, 10, 14, 30), False),  # naive means UTC: 15:30 in Berlin
])
def test_freeze_window_in_its_time_zone(now: datetime, frozen: bool) -> None:
    policy = load_policy(FRIDAY_EVENING)
    result = check_promotion(policy, mr(now=now), "prod", protected=True)
    assert [f.rule for f in result.blocking] == (["freeze"] if frozen else [])
    if frozen:
        assert result.blocking[0].message.startswith(
            "change freeze: no Friday evening deploys (`* 16-23 * * 5` in Europe/Berlin; it is Fri ")


def test_freeze_window_scope_and_override() -> None:
    friday = datetime(2025, 6, 6, 15, 0, tzinfo=UTC)
    policy = load_policy(FRIDAY_EVENING)
    assert check_promotion(policy, mr(now=friday), "staging", protected=False).ok  # only protected ones
    owner = Override("freeze", "olga", OWNER, HEAD)
    maintainer = Override("freeze", "mia", MAINTAINER, HEAD)
    assert check_promotion(policy, mr(now=friday, overrides=(owner,)), "prod", True).ok
    assert not check_promotion(policy, mr(now=friday, overrides=(maintainer,)), "prod", True).ok
    staging_too = load_policy({"rules": {"freeze": {"windows": [
        {"cron": "* * * * *", "environments": ["staging"], "reason": "migration"}]}}})
    assert not check_promotion(staging_too, mr(now=friday), "staging", protected=False).ok
    assert check_promotion(staging_too, mr(now=friday), "prod", protected=True).ok


def test_cron_fields() -> None:
    weekday_hours = parse_cron("*/15 9-17 * * mon-fri")
    assert weekday_hours.matches(datetime(2025, 6, 4, 9, 45))  # Wednesday
    assert not weekday_hours.matches(datetime(2025, 6, 4, 9, 44))
    assert not weekday_hours.matches(datetime(2025, 6, 7, 10, 0))  # Saturday
    sunday = parse_cron("0 12 * * 7")
    assert sunday.matches(datetime(2025, 6, 8, 12, 0)) and parse_cron("0 12 * * 0").matches(
        datetime(2025, 6, 8, 12, 0))
    # Both day fields restricted: either matches (cron's rule).
    first_or_monday = parse_cron("0 0 1 * mon")
    assert first_or_monday.matches(datetime(2025, 10, 1, 0, 0))  # a Wednesday, the 1st
    assert first_or_monday.matches(datetime(2025, 10, 6, 0, 0))  # a Monday
    assert not first_or_monday.matches(datetime(2025, 10, 7, 0, 0))
    december = parse_cron("* * 24-31 dec *")
    assert december.matches(datetime(2025, 12, 24, 8, 0))
    assert not december.matches(datetime(2025, 11, 24, 8, 0))
    assert parse_cron("0 22-23,0-5 * * *").matches(datetime(2025, 1, 1, 3, 0))


@pytest.mark.parametrize("text, says", [
    ("* * * *", "has 4"),
    ("60 * * * *", "minute: 60 is outside 0-59"),
    ("* 22-5 * * *", "runs backwards"),
    ("* * * * funday", "not a number or one of"),
    ("*/0 * * * *", "not a positive number"),
])
def test_cron_errors(text: str, says: str) -> None:
    with pytest.raises(CronError, match=says):
        parse_cron(text)


# -- untrusted code ---------------------------------------------------------------------------------

def test_trusted_authors_need_no_approval_to_build(default: Policy) -> None:
    assert needs_approval(default, mr(approvals=())) is None


def test_fork_needs_a_maintainer_approval_at_the_head_sha(default: Policy) -> None:
    fork = mr(from_fork=True, author="eve", author_role=MAINTAINER, approvals=())
    finding = needs_approval(default, fork)
    assert finding is not None and finding.rule == "untrusted" and finding.level == "block"
    assert finding.message == (f"this merge request comes from a fork; commit {HEAD[:12]} is not built "
                               "until approved")
    approved = replace(fork, approvals=(Approval("mia", MAINTAINER, HEAD),))
    assert needs_approval(default, approved) is None
    # A new commit: the approval was for the old one.
    pushed = replace(fork, approvals=(Approval("mia", MAINTAINER, OLD),))
    finding = needs_approval(default, pushed)
    assert finding is not None and f"approvals at {OLD[:12]} do not cover new commits" in finding.message
    # A developer's approval does not count, nor the author's own, nor in another's name.
    assert needs_approval(default, fork, [Approval("dave", DEVELOPER, HEAD)]) is not None
    assert needs_approval(default, fork, [Approval("Eve", MAINTAINER, HEAD)]) is not None
    assert needs_approval(default, fork, [Override("untrusted", "olga", OWNER, HEAD)]) is None
    assert needs_approval(default, fork, [Override("tests", "olga", OWNER, HEAD)]) is not None


def test_authors_below_the_trusted_role_need_approval(default: Policy) -> None:
    guest = mr(author="gus", author_role=READ, approvals=())
    finding = needs_approval(default, guest)
    assert finding is not None and "@gus, whose role is read (below developer)" in finding.message
    assert needs_approval(default, guest, [Approval("mia", MAINTAINER, HEAD)]) is None
    stricter = load_policy({"rules": {"untrusted": {"trusted_role": "maintainer"}}})
    assert needs_approval(stricter, mr(approvals=())) is not None  # a developer is now untrusted


# -- environment safety -----------------------------------------------------------------------------

def test_connections(default: Policy) -> None:
    assert check_connection(default, ConnectionFacts("analytics", ("analytics", "default"))) is None
    assert check_connection(default, ConnectionFacts("anything", ("*",))) is None
    refusal = check_connection(default, ConnectionFacts("finance", ("analytics",)))
    assert refusal is not None and refusal.message == (
        "connection 'finance' is not allowed for this repository (allowed: analytics)")


def test_write_scope(default: Policy) -> None:
    assert check_write_scope(default, ["marts__mr_42", "staging__mr_42", "sluice__marts"], "mr_42") == ()
    bad = check_write_scope(default, ["marts", "marts__staging", "marts__x__mr_42", "sluice__",
                                      "marts__mr_42"], "mr_42")
    assert [f.message.split("'")[1] for f in bad] == [
        "marts", "marts__staging", "marts__x__mr_42", "sluice__"]
    assert all(f.rule == "write-scope" and f.level == "block" for f in bad)
    assert check_write_scope(default, ["marts", "sluice__marts"], "prod") == ()
    assert len(check_write_scope(default, ["marts__mr_1"], "prod")) == 1
    assert check_write_scope(default, ["marts__dev", "x__y"], "dev", physical_prefix="x__") == ()


def test_the_readme_policy_example_loads(tmp_path):
    """The README's complete policy file is a valid server policy."""
    import re as _re

    readme = (REPO / "README.md").read_text()
    block = _re.search(r"```yaml\n(# /etc/sluice/policy\.yml.*?)```", readme, _re.S)
    assert block is not None
    path = tmp_path / "policy.yml"
    path.write_text(block.group(1))
    policy = load_policy(None, server=path)
    assert policy.rules["approvals"].options["required"] == 2 or policy.approvals_required == 2
    assert len(policy.freeze) == 2
    assert {rule.id for rule in policy.custom} == {"no-distinct-in-marts", "events-need-a-filter"}
