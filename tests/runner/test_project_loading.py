"""Loading a data project from disk (`runner.project.load_project`).

Every problem a user can make in `sluice.yml`, a models YAML file, a model, a seed or a singular
test is a `ProjectError` whose text starts with the offending file, relative to the project root,
and the line where there is one (`models/marts/orders.sql:3: ...`).

Most of those problems are one row of `BAD_PROJECT_FILES`: the files to write into a copy of the
demo project (`shop`) or into a project holding only a `sluice.yml` (`empty`), the file and line
the error must name, and the text the message must hold. `test_a_bad_project_file_is_named_with_its_line`
checks every row. The tests after the table are the ones a row cannot say: projects that load, cycles
whose order is not fixed, several loads against a parse cache, and what a loaded project holds.
"""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path
from types import EllipsisType

import pytest

from runner.errors import ProjectError
from runner.project.loader import load_project
from runner.project.nodes import Project
from tests.support.paths import DEMO

ORDERS_SQL = "models/marts/orders.sql"
SCHEMA_YML = "models/schema.yml"


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A fresh copy of the demo project, free to break."""
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    return root


@pytest.fixture
def empty(tmp_path: Path) -> Path:
    """A project with only a `sluice.yml`; tests add the files they need."""
    root = tmp_path / "tiny"
    root.mkdir()
    write(root, "sluice.yml", "name: tiny\n")
    return root


def text(source: str) -> str:
    """A triple-quoted file body, without its indentation and first newline."""
    return textwrap.dedent(source).lstrip("\n")


def write(root: Path, rel: str, source: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text(source))
    return path


def load_error(root: Path, **kwargs: object) -> ProjectError:
    with pytest.raises(ProjectError) as info:
        load_project(root, **kwargs)  # type: ignore[arg-type]
    return info.value


def assert_names(error: ProjectError, file: str, line: int | None = None) -> None:
    """The message starts with `file:line: ` (or `file: ` when no line is known)."""
    where = file if line is None else f"{file}:{line}"
    assert str(error).startswith(f"{where}: "), str(error)
    assert error.file == file
    if line is not None:
        assert error.line == line


# --- one bad file, one error ------------------------------------------------------------------------


def bad(id: str, files: dict[str, str], file: str, line: int | EllipsisType | None, *message: str,
        base: str = "shop") -> pytest.ParameterSet:
    """One row of `BAD_PROJECT_FILES`: write `files` (exact content) into the `base` project; the error
    names `file` and `line` (None: the message names no line; `...`: the line is not checked) and holds
    every `message` substring."""
    return pytest.param(base, files, file, line, message, id=id)


def columns_yml(column: str, *tests: str) -> str:
    """A models YAML file giving column `column` of marts.orders the lines `tests` under `tests:`."""
    head = f"models:\n  - name: orders\n    columns:\n      - name: {column}\n        tests:\n"
    return head + "".join(f"          {line}\n" for line in tests)


BAD_PROJECT_FILES = [
    # sluice.yml
    bad("sluice.yml syntax error names the file and line",
        {"sluice.yml": "name: shop\ndialect: duckdb\n  warehouse: default\n"},
        "sluice.yml", 3, "invalid YAML"),
    bad("sluice.yml unclosed list is a syntax error in that file",
        {"sluice.yml": "name: shop\npaths:\n  models: [models\n"},
        "sluice.yml", ..., "invalid YAML"),
    bad("sluice.yml duplicate key names the line of the repeat",
        {"sluice.yml": "name: shop\ndialect: duckdb\nname: other\n"},
        "sluice.yml", 3, 'duplicate key "name"'),
    bad("sluice.yml unknown key names the key and its line",
        {"sluice.yml": "name: shop\ndialect: duckdb\nwarehose: default\n"},
        "sluice.yml", 3, "unknown key 'warehose'", "warehouse"),  # the list of keys shows the intended one
    bad("sluice.yml unknown nested key names its own line",
        {"sluice.yml": "name: shop\nbuild:\n  threads: 4\n  thread: 2\n"},
        "sluice.yml", 4, "unknown key 'thread'"),
    bad("sluice.yml unsupported dialect names its line", {"sluice.yml": "name: shop\ndialect: mysql\n"},
        "sluice.yml", 2, "dialect 'mysql' is not supported"),
    bad("sluice.yml without a name is rejected", {"sluice.yml": "dialect: duckdb\n"},
        "sluice.yml", 1, "'name' is required"),
    # models YAML files
    bad("models yaml syntax error names the file and line",
        {SCHEMA_YML: "models:\n  - name: orders\n    description: Orders\n   columns: []\n"},
        SCHEMA_YML, 4, "invalid YAML"),
    bad("models yaml duplicate key names the line of the repeat",
        {SCHEMA_YML: "models:\n  - name: orders\n    description: first\n    description: second\n"},
        SCHEMA_YML, 4, 'duplicate key "description"'),
    bad("models yaml unknown key in a model entry names its line",
        {SCHEMA_YML: "models:\n  - name: orders\n    descripton: typo\n"},
        SCHEMA_YML, 3, "unknown key 'descripton' in model 'marts.orders'"),
    bad("models yaml unknown top-level key names its line", {SCHEMA_YML: "models: []\nmodel: []\n"},
        SCHEMA_YML, 2, "unknown key 'model'"),
    bad("models yaml unknown column key names its line",
        {SCHEMA_YML: "models:\n  - name: orders\n    columns:\n      - name: order_id\n"
                     "        test: [unique]\n"},
        SCHEMA_YML, 5, "unknown key 'test'"),
    bad("yaml file in a subfolder is named by its own path",
        {"models/staging/staging.yaml": "sources:\n  - name: ext\n    tabels: []\n"},
        "models/staging/staging.yaml", 3, "unknown key 'tabels'"),
    # one SELECT per model
    bad("model with two statements names the file and the second statement",
        {ORDERS_SQL: "select 1 as a;\n\nselect 2 as b\n"},
        ORDERS_SQL, 3, "2 statements"),
    *(bad(f"model with ddl names the file and the statement: {name}",
          {ORDERS_SQL: "-- a model that writes\n" + sql},
          ORDERS_SQL, 2, f"found {kind}")
      for name, sql, kind in [
          ("create table", "create table marts.orders as select 1 as a\n", "CREATE"),
          ("create view", "create view marts.orders_v as select 1 as a\n", "CREATE"),
          ("drop", "drop table raw.raw_orders\n", "DROP"),
          ("alter", "alter table raw.raw_orders add column x int\n", "ALTER"),
      ]),
    *(bad(f"model with {what} names the file: {kind}", {ORDERS_SQL: sql},
          ORDERS_SQL, 1, f"found {kind}")
      for what, sql, kind in [
          ("dml", "insert into raw.raw_orders select * from raw.raw_orders\n", "INSERT"),
          ("dml", "delete from raw.raw_orders\n", "DELETE"),
          ("dml", "update raw.raw_orders set status = 'x'\n", "UPDATE"),
          ("what configures the warehouse", "ATTACH 'other.duckdb' AS other\n", "ATTACH"),
          ("what configures the warehouse", "PRAGMA enable_profiling\n", "PRAGMA"),
          ("what configures the warehouse", "SET threads = 1\n", "SET"),
          ("what configures the warehouse", "COPY raw.raw_orders TO '/tmp/orders.csv'\n", "COPY"),
          ("what configures the warehouse", "INSTALL httpfs\n", "INSTALL"),
      ]),
    bad("dml hidden in a cte is rejected",
        {ORDERS_SQL: "with gone as (delete from raw.raw_orders returning *)\nselect * from gone\n"},
        ORDERS_SQL, 1, "DELETE is not allowed inside a model"),
    bad("table function read_csv names the file and line",
        {ORDERS_SQL: "select *\nfrom read_csv('/etc/passwd')\n"},
        ORDERS_SQL, 2, "table function", "READ_CSV('/etc/passwd')"),
    bad("table function in a join names its line",
        {ORDERS_SQL: "select o.order_id\nfrom staging.stg_orders as o\n"
                     "join read_csv_auto('/etc/passwd') as p on true\n"},
        ORDERS_SQL, 3, "table function"),
    bad("table function in a scalar subquery is rejected",
        {ORDERS_SQL: "select (select count(*) from read_csv('/etc/passwd')) as n\n"},
        ORDERS_SQL, 1, "table function"),
    bad("reading a file path as a table is rejected", {ORDERS_SQL: "select *\nfrom '/etc/passwd'\n"},
        ORDERS_SQL, 2, "'/etc/passwd' is not a model, a seed or a declared source"),
    bad("sql syntax error names the file and line",
        {ORDERS_SQL: "select order_id\nfrom staging.stg_orders\nwhre order_id = 1\n"},
        ORDERS_SQL, 3, "SQL syntax error"),
    *(bad(f"{name} model file is named", {ORDERS_SQL: body},
          ORDERS_SQL, None, "holds no SQL query")
      for name, body in [("empty", ""), ("blank", "\n  \n"), ("comment-only", "-- nothing here yet\n")]),
    bad("singular test with ddl names the test file", {"tests/drop_it.sql": "drop table marts.orders\n"},
        "tests/drop_it.sql", 1, "found DROP"),
    *(bad(f"identifier with {name} is refused",
          {"models/marts/odd.sql": f"select 1 as {identifier} from raw.raw_orders\n"},
          "models/marts/odd.sql", ..., ": identifier ")
      for name, identifier in [
          ("quotes and a semicolon", '"x""; drop table marts.orders; --"'),
          ("a comment marker", '"a/*b*/"'),
          ("a line break", '"line\nbreak"'),
      ]),
    # references
    bad("reference to an unknown table names the file and the line of the reference",
        {ORDERS_SQL: "select o.order_id\nfrom staging.stg_orders as o\n\n"
                     "left join staging.stg_refunds as r on o.order_id = r.order_id\n"},
        ORDERS_SQL, 4, "table 'staging.stg_refunds' is not a model, a seed or a declared source"),
    bad("unqualified unknown table names the line", {ORDERS_SQL: "select order_id\n\nfrom refunds\n"},
        ORDERS_SQL, 3, "table 'refunds'"),
    bad("three-part name is unknown", {ORDERS_SQL: "select id\nfrom other_db.raw.raw_orders\n"},
        ORDERS_SQL, 2, "table 'other_db.raw.raw_orders'"),
    bad("unknown table in a singular test names the test file",
        {"tests/no_refunds.sql": "select *\nfrom marts.refunds\n"},
        "tests/no_refunds.sql", 2, "table 'marts.refunds'"),
    bad("ambiguous unqualified reference lists the candidates",
        {"models/marts/raw_orders.sql": "select id from raw.raw_orders\n",  # a model named like the seed
         ORDERS_SQL: "select id\n\nfrom raw_orders\n"},
        ORDERS_SQL, 3, "table 'raw_orders' is ambiguous: write one of marts.raw_orders, raw.raw_orders"),
    bad("model reading itself is a cycle", {"models/a.sql": "select x from main.a\n"},
        "models/a.sql", 1, "dependency cycle: main.a -> main.a", base="empty"),
    # duplicate names
    bad("model files differing only in case are a duplicate", {"models/marts/Orders.sql": "select 1 as a\n"},
        ORDERS_SQL, None, "duplicate model name 'marts.orders'", "models/marts/Orders.sql"),
    bad("model in the default schema folder and at the top are a duplicate",
        {"models/a.sql": "select 1 as x\n", "models/main/a.sql": "select 2 as x\n"},
        "models/main/a.sql", None, "duplicate model name 'main.a': also defined in models/a.sql",
        base="empty"),
    bad("seed and model with the same name are a duplicate",
        {"models/raw/raw_orders.sql": "select 1 as id\n"},
        "seeds/raw_orders.csv", None,
        "seed 'raw.raw_orders' has the same name as the model in models/raw/raw_orders.sql"),
    bad("source with the name of a model is a duplicate",
        {"models/sources.yml": "sources:\n  - name: marts\n    tables:\n      - name: orders\n"},
        "models/sources.yml", ..., "source table 'marts.orders'"),
    # YAML entries
    bad("models entry naming no model file names its line",
        {SCHEMA_YML: "models:\n  - name: orders\n  - name: ordres\n    description: a typo\n"},
        SCHEMA_YML, 3, "models entry 'ordres' matches no model file under models/"),
    bad("models entry naming a seed matches no model file", {SCHEMA_YML: "models:\n  - name: raw_orders\n"},
        SCHEMA_YML, 2, "models entry 'raw_orders' matches no model file"),
    bad("models entry matching two models says it is ambiguous",
        {"models/marts/stg_orders.sql": "select order_id from staging.stg_orders\n"},
        SCHEMA_YML, 9,  # `- name: stg_orders` in the demo's schema.yml
        "ambiguous", "marts.stg_orders", "staging.stg_orders"),
    bad("unknown test name names the line", {SCHEMA_YML: columns_yml("order_id", "- unique", "- not_nul")},
        SCHEMA_YML, 5, "unknown test 'not_nul' on marts.orders.order_id"),
    bad("unknown test with arguments names its own line",
        {SCHEMA_YML: columns_yml("amount", "- not_null", "- between:", "    min: 0")},
        SCHEMA_YML, 7, "unknown test 'between'"),
    bad("bad materialized names the line",
        {SCHEMA_YML: "models:\n  - name: orders\n    materialized: incremental\n"},
        SCHEMA_YML, 3, "materialized 'incremental' is not supported; use one of: table, view"),
    bad("bad materialized under config names the line",
        {SCHEMA_YML: "models:\n  - name: orders\n    config:\n      materialized: ephemeral\n"},
        SCHEMA_YML, 4, "materialized 'ephemeral'"),
    *(bad(f"accepted_values without values names the line: {arguments}",
          {SCHEMA_YML: columns_yml("status", "- accepted_values:", f"    {arguments}")},
          SCHEMA_YML, 7, "accepted_values on marts.orders.status needs 'values'")
      for arguments in ["quote: true", "values: []"]),
    bad("accepted_values as a bare name needs values",
        {SCHEMA_YML: "models:\n  - name: orders\n    columns:\n      - name: status\n"
                     "        tests: [accepted_values]\n"},
        SCHEMA_YML, 5, "needs 'values'"),
    bad("relationships without to names the line",
        {SCHEMA_YML: columns_yml("customer_id", "- relationships:", "    field: customer_id")},
        SCHEMA_YML, 7, "relationships on marts.orders.customer_id needs 'to'"),
    bad("relationships without field is rejected",
        {SCHEMA_YML: columns_yml("customer_id", "- relationships:", "    to: marts.customers")},
        SCHEMA_YML, 7, "'field'"),
    bad("relationships to an unknown model names the target",
        {SCHEMA_YML: columns_yml("customer_id", "- relationships:", "    to: marts.clients",
                                 "    field: customer_id")},
        SCHEMA_YML, 7, "'marts.clients'"),
    bad("model-level tests are rejected with their line",
        {SCHEMA_YML: "models:\n  - name: orders\n    tests: [unique]\n"},
        SCHEMA_YML, 3, "model-level tests are not supported"),
    # names
    bad("folder with a double underscore is an invalid schema",
        {"models/my__marts/totals.sql": "select 1 as a\n"},
        "models/my__marts/totals.sql", None,
        "schema (the folder under models/) 'my__marts' is not a valid name"),
    *(bad(f"invalid model name names the file: {why}", {rel: "select 1 as a\n"},
          rel, None, f"{name} is not a valid name")
      for why, rel, name in [
          ("digit file", "models/marts/2024_orders.sql", "'2024_orders'"),
          ("digit folder", "models/3marts/orders.sql", "'3marts'"),
          ("hyphen", "models/marts/order-lines.sql", "'order-lines'"),
          ("reserved prefix", "models/marts/sluice_state.sql", "'sluice_state'"),
      ]),
    bad("seed name starting with a digit names the file", {"seeds/2024_targets.csv": "month,target\n1,100\n"},
        "seeds/2024_targets.csv", None, "seed name (the file name) '2024_targets' is not a valid name"),
    bad("seed with a repeated header column names the first line",
        {"seeds/targets.csv": "month,Month\n1,2\n"},
        "seeds/targets.csv", 1, "repeats a column name"),
]


@pytest.mark.parametrize(("base", "files", "file", "line", "message"), BAD_PROJECT_FILES)
def test_a_bad_project_file_is_named_with_its_line(
    base: str, files: dict[str, str], file: str, line: int | EllipsisType | None, message: tuple[str, ...],
    request: pytest.FixtureRequest,
):
    root: Path = request.getfixturevalue(base)
    for rel, content in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(content)

    error = load_error(root)

    if line is ...:
        assert error.file == file
        assert str(error).startswith(f"{file}:"), str(error)
    else:
        assert_names(error, file, line)
    for part in message:
        assert part in str(error), str(error)


# --- projects that load -----------------------------------------------------------------------------


def test_model_with_a_trailing_semicolon_is_one_statement(shop: Path):
    write(shop, ORDERS_SQL, "select order_id from staging.stg_orders;\n")

    project = load_project(shop)

    assert project.models["marts.orders"].depends_on == ("staging.stg_orders",)


def test_a_comment_after_the_final_semicolon_is_not_a_second_statement(shop: Path):
    path = shop / ORDERS_SQL
    path.write_text(path.read_text() + ";\n-- reviewed by the finance team\n")

    assert "marts.orders" in load_project(shop).models


# --- cycles and duplicates whose order is not fixed -------------------------------------------------


def test_dependency_cycle_prints_the_cycle(empty: Path):
    write(empty, "models/a.sql", "select x from main.b\n")
    write(empty, "models/b.sql", "select x from main.a\n")

    error = load_error(empty)

    assert error.file in ("models/a.sql", "models/b.sql")
    assert str(error).startswith(f"{error.file}:1: ")  # the line that reads the next model
    assert "dependency cycle:" in str(error)
    assert "main.a -> main.b -> main.a" in str(error) or "main.b -> main.a -> main.b" in str(error)


def test_three_model_cycle_follows_the_reads(empty: Path):
    write(empty, "models/a.sql", "select x from main.c\n")
    write(empty, "models/b.sql", "select x from main.a\n")
    write(empty, "models/c.sql", "select x from b\n")

    error = load_error(empty)

    # each model reads the next: a reads c, c reads b, b reads a
    cycle = str(error).split("dependency cycle: ", 1)[1].split(" (", 1)[0]
    assert cycle in ("main.a -> main.c -> main.b -> main.a", "main.c -> main.b -> main.a -> main.c",
                     "main.b -> main.a -> main.c -> main.b")
    first = cycle.split(" -> ")[0].split(".")[1]
    assert_names(error, f"models/{first}.sql", 1)


def test_staging_reading_a_mart_closes_a_cycle_in_the_demo(shop: Path):
    write(shop, "models/staging/stg_orders.sql", "select order_id from marts.orders\n")

    error = load_error(shop)

    assert "dependency cycle:" in str(error)
    assert ("marts.orders -> staging.stg_orders -> marts.orders" in str(error)
            or "staging.stg_orders -> marts.orders -> staging.stg_orders" in str(error))


def test_models_entry_described_twice_names_both_places(shop: Path):
    write(shop, "models/marts/marts.yml", """
        models:
          - name: marts.orders
            description: again
    """)

    error = load_error(shop)

    # whichever file is read second is the one reported, pointing at the other
    assert "model 'marts.orders' is described twice" in str(error)
    assert {error.file, str(error).split("(also at ")[1].split(":")[0]} == {
        "models/marts/marts.yml", SCHEMA_YML}


# --- the demo project -------------------------------------------------------------------------------


@pytest.fixture
def demo(shop: Path) -> Project:
    return load_project(shop)


def test_demo_loads_every_model_with_its_schema_from_the_folder(demo: Project):
    assert set(demo.models) == {
        "staging.stg_customers", "staging.stg_orders", "staging.stg_payments",
        "marts.customers", "marts.orders", "marts.customer_segments",
        "marts.order_status_counts", "marts.revenue_by_day",
    }
    orders = demo.models["marts.orders"]
    assert (orders.schema, orders.table, orders.path) == ("marts", "orders", ORDERS_SQL)


def test_demo_loads_seeds_with_their_header_columns(demo: Project):
    assert set(demo.seeds) == {"raw.raw_customers", "raw.raw_orders", "raw.raw_payments"}
    payments = demo.seeds["raw.raw_payments"]
    assert payments.path == "seeds/raw_payments.csv"
    assert payments.columns == ("id", "order_id", "payment_method", "amount")
    assert len(payments.content_hash) == 64
    assert demo.sources == {}


def test_demo_models_depend_on_the_tables_they_read(demo: Project):
    depends = {name: model.depends_on for name, model in demo.models.items()}

    assert depends == {
        "staging.stg_customers": ("raw.raw_customers",),
        "staging.stg_orders": ("raw.raw_orders",),
        "staging.stg_payments": ("raw.raw_payments",),
        "marts.customers": ("staging.stg_customers", "staging.stg_orders", "staging.stg_payments"),
        "marts.orders": ("staging.stg_orders", "staging.stg_payments"),
        "marts.customer_segments": ("marts.customers",),
        "marts.order_status_counts": ("marts.orders",),
        "marts.revenue_by_day": ("marts.orders",),
    }


def test_demo_yaml_metadata_reaches_the_models(demo: Project):
    assert demo.models["marts.order_status_counts"].materialized == "view"
    assert demo.models["marts.orders"].materialized == "table"
    assert demo.models["marts.orders"].unique_key == ("order_id",)
    assert demo.models["marts.orders"].description == "One row per order with its payments by method."
    email = {c.name: c for c in demo.models["marts.customers"].columns}["email"]
    assert email.tags == ("pii",)


def test_demo_tests_are_loaded_from_yaml_and_the_tests_folder(demo: Project):
    by_name = {t.name: t for t in demo.tests}

    assert len(demo.tests) == 18  # 17 column tests in schema.yml, 1 singular test
    assert by_name["unique(staging.stg_orders.order_id)"].line == 13
    accepted = by_name["accepted_values(staging.stg_orders.status)"]
    assert accepted.values == ("placed", "shipped", "completed", "return_pending", "returned")
    assert (accepted.file, accepted.line) == (SCHEMA_YML, 16)
    relationship = by_name["relationships(marts.orders.customer_id)"]
    assert (relationship.to, relationship.field) == ("marts.customers", "customer_id")
    assert relationship.depends_on == ("marts.customers",)
    singular = by_name["assert_no_negative_revenue"]
    assert singular.kind == "singular"
    assert singular.file == "tests/assert_no_negative_revenue.sql"
    assert singular.depends_on == ("marts.revenue_by_day",)
    assert singular.sql is not None and "-- " not in singular.sql


def test_dag_order_puts_every_node_after_what_it_reads(demo: Project):
    position = {name: i for i, name in enumerate(demo.dag.order)}

    assert set(position) == set(demo.models) | set(demo.seeds)
    for name, model in demo.models.items():
        for parent in model.depends_on:
            assert position[parent] < position[name], (parent, name)


def test_dag_order_puts_staging_before_marts(demo: Project):
    order = demo.dag.order
    last_staging = max(i for i, n in enumerate(order) if n.startswith("staging."))
    first_mart = min(i for i, n in enumerate(order) if n.startswith("marts."))

    assert last_staging < first_mart
    assert demo.dag.downstream(["staging.stg_payments"]) == {
        "marts.customers", "marts.orders", "marts.customer_segments",
        "marts.order_status_counts", "marts.revenue_by_day",
    }


def test_cte_names_are_not_treated_as_tables(demo: Project):
    orders = demo.models["marts.orders"]  # reads the CTE `payments`
    customers = demo.models["marts.customers"]  # reads `customer_orders`, `customer_payments`

    assert sorted(r.text for r in orders.refs) == ["staging.stg_orders", "staging.stg_payments"]
    assert orders.depends_on == ("staging.stg_orders", "staging.stg_payments")
    assert {r.text for r in customers.refs} == {
        "staging.stg_payments", "staging.stg_orders", "staging.stg_customers"}


def test_cte_named_like_a_model_shadows_it(shop: Path):
    write(shop, ORDERS_SQL, """
        with stg_orders as (select 1 as order_id)
        select order_id from stg_orders
    """)

    project = load_project(shop)

    assert project.models["marts.orders"].depends_on == ()


def test_cte_inside_a_subquery_does_not_hide_the_table_outside_it(shop: Path):
    write(shop, ORDERS_SQL, """
        select a.x, b.order_id
        from (with stg_orders as (select 1 as x) select x from stg_orders) as a
        cross join stg_orders as b
    """)

    project = load_project(shop)

    assert project.models["marts.orders"].depends_on == ("staging.stg_orders",)


def test_unqualified_references_resolve_to_the_only_table_with_that_name(shop: Path):
    write(shop, ORDERS_SQL, """
        select o.order_id, p.amount
        from stg_orders as o
        join stg_payments as p on o.order_id = p.order_id
        join raw_customers as c on true
    """)

    project = load_project(shop)

    orders = project.models["marts.orders"]
    assert orders.depends_on == ("raw.raw_customers", "staging.stg_orders", "staging.stg_payments")
    assert [(r.text, r.line) for r in orders.refs] == [
        ("stg_orders", 2), ("stg_payments", 3), ("raw_customers", 4)]
    assert project.resolve(("stg_orders",)) == "staging.stg_orders"
    assert project.resolve(("nope",)) is None


def test_identifier_case_does_not_change_the_reference(shop: Path):
    write(shop, ORDERS_SQL, "SELECT ORDER_ID FROM STAGING.STG_ORDERS\n")

    project = load_project(shop)

    assert project.models["marts.orders"].depends_on == ("staging.stg_orders",)


def test_declared_sources_are_loaded_and_readable(shop: Path):
    write(shop, "models/sources.yml", """
        sources:
          - name: ext
            tables:
              - name: events
                columns:
                  - name: id
                  - name: Kind
              - name: users
    """)
    write(shop, "models/marts/events.sql", """
        select e.id, e.kind, u.name
        from ext.events as e
        join users as u on e.user_id = u.id
    """)

    project = load_project(shop)

    assert set(project.sources) == {"ext.events", "ext.users"}
    assert project.sources["ext.events"].columns == ("id", "kind")
    assert project.sources["ext.users"].columns is None  # undeclared: ask the warehouse
    assert project.sources["ext.events"].file == "models/sources.yml"
    events = project.models["marts.events"]
    assert [r.text for r in events.refs] == ["ext.events", "users"]
    assert project.resolve(("users",)) == "ext.users"


# --- canonical SQL ----------------------------------------------------------------------------------

STG_PAYMENTS = "models/staging/stg_payments.sql"
REFORMATTED_STG_PAYMENTS = """
    /* the same query, written differently */
    SELECT
            id     AS payment_id ,
      order_id,   -- the order it pays
      payment_method,
      AMOUNT / 100.0   AS amount
    FROM raw.raw_payments   ;
"""
REFORMATTED_REVENUE = """
    SELECT order_date, COUNT(*) AS orders, SUM(amount) AS revenue FROM marts.orders
    WHERE status <> 'returned' GROUP BY order_date
"""


def test_canonical_sql_ignores_whitespace_comments_and_keyword_case(tmp_path: Path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    shutil.copytree(DEMO, first)
    shutil.copytree(DEMO, second)
    write(second, STG_PAYMENTS, REFORMATTED_STG_PAYMENTS)
    write(second, "models/marts/revenue_by_day.sql", REFORMATTED_REVENUE)

    a, b = load_project(first), load_project(second)

    assert (second / STG_PAYMENTS).read_text() != (first / STG_PAYMENTS).read_text()
    assert {n: m.canonical for n, m in a.models.items()} == {n: m.canonical for n, m in b.models.items()}
    assert "--" not in a.models["staging.stg_payments"].canonical
    assert "amounts are stored in cents" not in a.models["staging.stg_payments"].canonical


def test_canonical_sql_changes_when_the_query_changes(tmp_path: Path):
    first = tmp_path / "first"
    second = tmp_path / "second"
    shutil.copytree(DEMO, first)
    shutil.copytree(DEMO, second)
    write(second, STG_PAYMENTS, REFORMATTED_STG_PAYMENTS.replace("100.0", "1000.0"))

    a, b = load_project(first), load_project(second)

    assert a.models["staging.stg_payments"].canonical != b.models["staging.stg_payments"].canonical
    assert a.models["staging.stg_orders"].canonical == b.models["staging.stg_orders"].canonical


# --- parse cache ------------------------------------------------------------------------------------


def parsed_entries(text: str) -> list[object]:
    """The cache's parses (canonical SQL and references), not the safety check's passes."""
    return [entry for entry in json.loads(text).values() if isinstance(entry, list)]


def test_parse_cache_gives_the_same_project_on_a_second_load(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"

    first = load_project(shop, cache_dir=cache_dir)
    cache_file = cache_dir / "parse-cache.json"
    saved = cache_file.read_text()
    second = load_project(shop, cache_dir=cache_dir)

    assert second.models == first.models
    assert second.tests == first.tests
    assert second.dag.order == first.dag.order
    assert first.models == load_project(shop).models  # same as without a cache
    assert len(parsed_entries(saved)) == 9  # 8 models and 1 singular test (and their checks' passes)
    assert cache_file.read_text() == saved  # nothing new to parse, nothing rewritten


def test_parse_cache_reparses_a_changed_file(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    load_project(shop, cache_dir=cache_dir)

    write(shop, ORDERS_SQL, """
        select order_id, customer_id
        from staging.stg_orders
    """)
    project = load_project(shop, cache_dir=cache_dir)

    orders = project.models["marts.orders"]
    assert orders.depends_on == ("staging.stg_orders",)
    assert orders.canonical == "SELECT order_id, customer_id FROM staging.stg_orders"
    assert [(r.text, r.line) for r in orders.refs] == [("staging.stg_orders", 2)]
    assert len(parsed_entries((cache_dir / "parse-cache.json").read_text())) == 10


def test_parse_cache_does_not_hide_a_new_error(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    load_project(shop, cache_dir=cache_dir)

    write(shop, ORDERS_SQL, "select 1 as a;\nselect 2 as b\n")

    error = load_error(shop, cache_dir=cache_dir)
    assert_names(error, ORDERS_SQL, 2)


def test_cached_references_are_still_checked_against_the_project(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    load_project(shop, cache_dir=cache_dir)

    (shop / "seeds/raw_payments.csv").unlink()  # stg_payments.sql is unchanged, and cached

    error = load_error(shop, cache_dir=cache_dir)
    assert_names(error, "models/staging/stg_payments.sql", 7)
    assert "table 'raw.raw_payments' is not a model" in str(error)


def test_unreadable_parse_cache_is_ignored(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "parse-cache.json").write_text('{"truncated": ')

    project = load_project(shop, cache_dir=cache_dir)

    assert project.models == load_project(shop).models
    assert len(parsed_entries((cache_dir / "parse-cache.json").read_text())) == 9


def test_parse_cache_that_is_not_a_json_object_is_ignored(shop: Path, tmp_path: Path):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    (cache_dir / "parse-cache.json").write_text("[]")

    project = load_project(shop, cache_dir=cache_dir)

    assert project.models == load_project(shop).models


def test_threads_saving_one_parse_cache_at_once_never_collide(shop: Path, tmp_path: Path):
    """Each writer has its own temporary file; the cache is always whole JSON."""
    import threading

    from runner.project.cache import ParseCache

    cache_file = tmp_path / "cache" / "parse-cache.json"
    errors: list[BaseException] = []

    def save(n: int) -> None:
        try:
            for i in range(20):
                cache = ParseCache(cache_file)
                cache.parse(f"select {n} as a, {i} as b", "duckdb", f"m{n}.sql")
                cache.save()
        except BaseException as exc:  # collected, asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert isinstance(json.loads(cache_file.read_text()), dict)
    assert [p.name for p in cache_file.parent.iterdir()] == ["parse-cache.json"]
