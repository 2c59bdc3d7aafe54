"""Generate a synthetic layered SQL project in Sluice, SQLMesh and dbt formats."""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work"
VENVS_DIR = BENCH_DIR / ".venvs"

TOOLS = ("sluice", "sqlmesh", "dbt")
SCHEMAS = ("staging", "intermediate", "marts")
SOURCE_NAME = "raw"

# The one-upstream-model change used for the branch/dev environment figure.
CHANGED_MODEL = "staging.stg_orders"
CHANGE_FROM = "ROUND(o.amount, 2) AS amount,"
CHANGE_TO = "ROUND(o.amount * 1.05, 2) AS amount,"

# Size of the fixed family of models downstream of staging.stg_orders.
ORDERS_DIRECT = 20
ORDERS_COMBOS = 20
ORDERS_MARTS = 10
ORDERS_FAMILY = ORDERS_DIRECT + ORDERS_COMBOS + ORDERS_MARTS
MIN_MODELS = 10 + ORDERS_FAMILY + 20

# Placeholders in model SQL, rendered differently for each tool.
_REF = re.compile(r"__REF__\((\w+)\.(\w+)\)")
_SRC = re.compile(r"__SRC__\((\w+)\.(\w+)\)")


# --------------------------------------------------------------------------- sources


def _rnd(salt: int, mod: int) -> str:
    """A deterministic pseudo-random integer in [0, mod) derived from the row number i."""
    a = 7_919 + salt * 104_729
    b = 15_485_863 + salt * 32_452_843
    return f"(((i * {a} + {b}) % 2147483647) % {mod})"


def _pick(salt: int, values: list[str]) -> str:
    """A deterministic pseudo-random choice among string literals."""
    items = ", ".join(f"'{v}'" for v in values)
    return f"([{items}])[{_rnd(salt, len(values))} + 1]"


def _day(base: str, salt: int, span: int) -> str:
    return f"CAST(DATE '{base}' + CAST({_rnd(salt, span)} AS INTEGER) AS DATE)"


def _money(salt: int, cents_max: int) -> str:
    return f"CAST({_rnd(salt, cents_max)} / 100.0 AS DECIMAL(12, 2))"


REGIONS = ["north", "south", "east", "west", "central"]
SEGMENTS = ["consumer", "corporate", "small_business", "enterprise"]
CATEGORIES = ["toys", "books", "garden", "kitchen", "sports", "music", "tools", "beauty"]
STATUSES = ["placed", "shipped", "delivered", "returned", "cancelled"]
CITIES = ["paris", "lyon", "berlin", "madrid", "rome", "lisbon", "vienna", "oslo", "dublin"]


@dataclass(frozen=True)
class Column:
    """One column of a raw source table: name, DuckDB type and generator expression."""

    name: str
    type: str
    expr: str


@dataclass(frozen=True)
class Source:
    """A raw source table plus the roles its staging model exposes to later layers."""

    table: str
    rows: int
    columns: tuple[Column, ...]
    staging_select: tuple[str, ...]
    staging_where: str
    entity: str
    date: str
    measure: str
    scale: float
    dims: tuple[tuple[str, str], ...] = ()  # (dimension staging model, join column)


def _sources() -> tuple[Source, ...]:
    def c(name: str, type_: str, expr: str) -> Column:
        return Column(name, type_, expr)

    return (
        Source(
            "customers", 20_000,
            (
                c("customer_id", "BIGINT", "i"),
                c("customer_name", "VARCHAR", "'customer_' || i"),
                c("region", "VARCHAR", _pick(1, REGIONS)),
                c("segment", "VARCHAR", _pick(2, SEGMENTS)),
                c("signup_date", "DATE", _day("2022-01-01", 3, 730)),
                c("credit_limit", "DECIMAL(12,2)", _money(4, 5_000_000)),
            ),
            (
                "s.customer_id",
                "LOWER(s.customer_name) AS customer_name",
                "s.region",
                "s.segment",
                "s.signup_date",
                "s.credit_limit",
                "CASE WHEN s.credit_limit >= 25000 THEN 'gold' "
                "WHEN s.credit_limit >= 10000 THEN 'silver' ELSE 'bronze' END AS tier",
            ),
            "s.customer_id IS NOT NULL",
            "customer_id", "signup_date", "credit_limit", 25_000.0,
        ),
        Source(
            "products", 20_000,
            (
                c("product_id", "BIGINT", "i"),
                c("product_name", "VARCHAR", "'product_' || i"),
                c("category", "VARCHAR", _pick(5, CATEGORIES)),
                c("list_price", "DECIMAL(12,2)", _money(6, 50_000)),
                c("unit_cost", "DECIMAL(12,2)", _money(7, 30_000)),
                c("launched_date", "DATE", _day("2021-01-01", 8, 1_000)),
            ),
            (
                "s.product_id",
                "s.product_name",
                "s.category",
                "s.list_price",
                "s.unit_cost",
                "s.list_price - s.unit_cost AS unit_margin",
                "s.launched_date",
            ),
            "s.list_price > 0",
            "product_id", "launched_date", "list_price", 250.0,
        ),
        Source(
            "stores", 20_000,
            (
                c("store_id", "BIGINT", "i"),
                c("store_name", "VARCHAR", "'store_' || i"),
                c("city", "VARCHAR", _pick(9, CITIES)),
                c("region", "VARCHAR", _pick(10, REGIONS)),
                c("opened_date", "DATE", _day("2015-01-01", 11, 3_000)),
                c("floor_area", "INTEGER", f"CAST(200 + {_rnd(12, 4_800)} AS INTEGER)"),
            ),
            (
                "s.store_id",
                "s.store_name",
                "s.city",
                "s.region",
                "s.opened_date",
                "s.floor_area",
                "CASE WHEN s.floor_area >= 3000 THEN 'large' "
                "WHEN s.floor_area >= 1000 THEN 'medium' ELSE 'small' END AS store_size",
            ),
            "s.store_id IS NOT NULL",
            "store_id", "opened_date", "floor_area", 2_500.0,
        ),
        Source(
            "employees", 30_000,
            (
                c("employee_id", "BIGINT", "i"),
                c("store_id", "BIGINT", f"1 + {_rnd(13, 20_000)}"),
                c("employee_name", "VARCHAR", "'employee_' || i"),
                c("role", "VARCHAR", _pick(14, ["clerk", "manager", "stocker", "cashier"])),
                c("salary", "DECIMAL(12,2)", _money(15, 9_000_000)),
                c("hire_date", "DATE", _day("2016-01-01", 16, 3_000)),
            ),
            (
                "s.employee_id",
                "s.store_id",
                "s.employee_name",
                "UPPER(s.role) AS role",
                "s.salary",
                "s.hire_date",
                "CASE WHEN s.role = 'manager' THEN TRUE ELSE FALSE END AS is_manager",
            ),
            "s.salary > 0",
            "store_id", "hire_date", "salary", 45_000.0,
            (("stg_stores", "store_id"),),
        ),
        Source(
            "orders", 100_000,
            (
                c("order_id", "BIGINT", "i"),
                c("customer_id", "BIGINT", f"1 + {_rnd(17, 20_000)}"),
                c("store_id", "BIGINT", f"1 + {_rnd(18, 20_000)}"),
                c("order_date", "DATE", _day("2023-01-01", 19, 365)),
                c("status", "VARCHAR", _pick(20, STATUSES)),
                c("amount", "DECIMAL(12,2)", _money(21, 100_000)),
            ),
            (
                "o.order_id",
                "o.customer_id",
                "o.store_id",
                "o.order_date",
                "UPPER(o.status) AS status",
                CHANGE_FROM.removesuffix(","),
                "CASE WHEN o.amount >= 500 THEN 'large' "
                "WHEN o.amount >= 100 THEN 'medium' ELSE 'small' END AS size_band",
            ),
            "o.status <> 'cancelled'",
            "customer_id", "order_date", "amount", 500.0,
            (("stg_customers", "customer_id"), ("stg_stores", "store_id")),
        ),
        Source(
            "order_items", 100_000,
            (
                c("item_id", "BIGINT", "i"),
                c("order_id", "BIGINT", f"1 + {_rnd(22, 100_000)}"),
                c("product_id", "BIGINT", f"1 + {_rnd(23, 20_000)}"),
                c("quantity", "INTEGER", f"CAST(1 + {_rnd(24, 9)} AS INTEGER)"),
                c("unit_price", "DECIMAL(12,2)", _money(25, 50_000)),
                c("discount", "DECIMAL(4,2)", f"CAST({_rnd(26, 30)} / 100.0 AS DECIMAL(4, 2))"),
                c("created_date", "DATE", _day("2023-01-01", 27, 365)),
            ),
            (
                "s.item_id",
                "s.order_id",
                "s.product_id",
                "s.quantity",
                "s.unit_price",
                "s.discount",
                "ROUND(s.quantity * s.unit_price * (1 - s.discount), 2) AS line_total",
                "s.created_date",
            ),
            "s.quantity > 0",
            "product_id", "created_date", "line_total", 1_000.0,
            (("stg_products", "product_id"),),
        ),
        Source(
            "payments", 80_000,
            (
                c("payment_id", "BIGINT", "i"),
                c("order_id", "BIGINT", f"1 + {_rnd(28, 100_000)}"),
                c("method", "VARCHAR", _pick(29, ["card", "cash", "transfer", "voucher"])),
                c("paid_amount", "DECIMAL(12,2)", _money(30, 100_000)),
                c("paid_date", "DATE", _day("2023-01-01", 31, 380)),
            ),
            (
                "s.payment_id",
                "s.order_id",
                "s.method",
                "s.paid_amount",
                "s.paid_date",
                "CASE WHEN s.method IN ('card', 'transfer') THEN 'electronic' "
                "ELSE 'other' END AS method_group",
            ),
            "s.paid_amount > 0",
            "order_id", "paid_date", "paid_amount", 500.0,
        ),
        Source(
            "shipments", 60_000,
            (
                c("shipment_id", "BIGINT", "i"),
                c("order_id", "BIGINT", f"1 + {_rnd(32, 100_000)}"),
                c("carrier", "VARCHAR", _pick(33, ["ups", "dhl", "fedex", "post"])),
                c("shipped_date", "DATE", _day("2023-01-02", 34, 365)),
                c("transit_days", "INTEGER", f"CAST(1 + {_rnd(35, 14)} AS INTEGER)"),
                c("shipping_cost", "DECIMAL(12,2)", _money(36, 5_000)),
            ),
            (
                "s.shipment_id",
                "s.order_id",
                "s.carrier",
                "s.shipped_date",
                "CAST(s.shipped_date + s.transit_days AS DATE) AS delivered_date",
                "s.shipping_cost",
                "CASE WHEN s.transit_days <= 3 THEN 'fast' "
                "WHEN s.transit_days <= 7 THEN 'normal' ELSE 'slow' END AS speed",
            ),
            "s.shipping_cost >= 0",
            "order_id", "shipped_date", "shipping_cost", 25.0,
        ),
        Source(
            "returns", 25_000,
            (
                c("return_id", "BIGINT", "i"),
                c("item_id", "BIGINT", f"1 + {_rnd(37, 100_000)}"),
                c("reason", "VARCHAR", _pick(38, ["damaged", "late", "wrong_item", "other"])),
                c("refund_amount", "DECIMAL(12,2)", _money(39, 40_000)),
                c("returned_date", "DATE", _day("2023-02-01", 40, 365)),
            ),
            (
                "s.return_id",
                "s.item_id",
                "s.reason",
                "s.refund_amount",
                "s.returned_date",
                "CASE WHEN s.reason IN ('damaged', 'wrong_item') THEN TRUE "
                "ELSE FALSE END AS is_our_fault",
            ),
            "s.refund_amount > 0",
            "item_id", "returned_date", "refund_amount", 200.0,
        ),
        Source(
            "web_events", 100_000,
            (
                c("event_id", "BIGINT", "i"),
                c("customer_id", "BIGINT", f"1 + {_rnd(41, 20_000)}"),
                c("event_type", "VARCHAR", _pick(42, ["view", "click", "cart", "checkout"])),
                c("event_date", "DATE", _day("2023-01-01", 43, 365)),
                c("page", "VARCHAR", "'/page/' || " + _rnd(44, 50)),
                c("duration_ms", "INTEGER", f"CAST({_rnd(45, 120_000)} AS INTEGER)"),
            ),
            (
                "s.event_id",
                "s.customer_id",
                "s.event_type",
                "s.event_date",
                "s.page",
                "s.duration_ms",
                "CASE WHEN s.duration_ms >= 60000 THEN 'long' "
                "WHEN s.duration_ms >= 10000 THEN 'medium' ELSE 'short' END AS engagement",
            ),
            "s.event_type <> 'bot'",
            "customer_id", "event_date", "duration_ms", 60_000.0,
            (("stg_customers", "customer_id"),),
        ),
    )


SOURCES: tuple[Source, ...] = _sources()
SOURCE_BY_TABLE = {s.table: s for s in SOURCES}

# A filter on each dimension model used by intermediate joins: (column, excluded value).
DIM_FILTERS = {
    "stg_customers": ("segment", "enterprise"),
    "stg_stores": ("store_size", "small"),
    "stg_products": ("category", "books"),
}


def seed_sql() -> str:
    """SQL that creates the raw source tables deterministically (no RNG state used)."""
    stmts = [f"CREATE SCHEMA IF NOT EXISTS {SOURCE_NAME};"]
    for src in SOURCES:
        cols = ",\n    ".join(f"CAST({col.expr} AS {col.type}) AS {col.name}" for col in src.columns)
        stmts.append(
            f"CREATE OR REPLACE TABLE {SOURCE_NAME}.{src.table} AS\n"
            f"SELECT\n    {cols}\nFROM (SELECT range + 1 AS i FROM range({src.rows})) AS g;"
        )
    return "\n\n".join(stmts) + "\n"


# --------------------------------------------------------------------------- models


@dataclass
class Model:
    """One generated model: schema, name, SQL body with placeholders, and its parents."""

    schema: str
    name: str
    sql: str
    parents: list[str] = field(default_factory=list)

    @property
    def fqn(self) -> str:
        return f"{self.schema}.{self.name}"


@dataclass(frozen=True)
class StagingInfo:
    """Roles a staging model exposes: entity key, date, measure and joinable dimensions."""

    name: str
    source: Source


def _ref(schema: str, name: str) -> str:
    return f"__REF__({schema}.{name})"


def _staging_sql(src: Source, variant: int | None) -> str:
    alias = "o" if src.table == "orders" else "s"
    cols = ",\n    ".join(src.staging_select)
    where = src.staging_where
    if variant is not None:
        id_col = src.columns[0].name
        where += f"\n    AND {alias}.{id_col} % {variant + 2} <> 0"
    return (
        f"SELECT\n    {cols}\n"
        f"FROM __SRC__({SOURCE_NAME}.{src.table}) AS {alias}\n"
        f"WHERE {where}\n"
    )


def _int_from_staging_sql(stg: StagingInfo, dim: tuple[str, str] | None, rng: random.Random) -> str:
    src = stg.source
    alias = "o" if src.table == "orders" else "s"
    lo = round(src.scale * rng.uniform(0.5, 1.5), 2)
    hi = round(lo * rng.uniform(2.0, 4.0), 2)
    join = ""
    where = f"{alias}.{src.measure} IS NOT NULL"
    if dim is not None:
        dim_model, key = dim
        col, value = DIM_FILTERS[dim_model]
        join = f"\n    INNER JOIN {_ref('staging', dim_model)} AS d\n        ON {alias}.{key} = d.{key}"
        where += f"\n        AND d.{col} <> '{value}'"
    return (
        "WITH base AS (\n"
        "    SELECT\n"
        f"        {alias}.{src.entity} AS entity_id,\n"
        f"        DATE_TRUNC('month', {alias}.{src.date}) AS month,\n"
        f"        CAST({alias}.{src.measure} AS DOUBLE) AS value\n"
        f"    FROM {_ref('staging', stg.name)} AS {alias}{join}\n"
        f"    WHERE {where}\n"
        ")\n"
        "SELECT\n"
        "    entity_id,\n"
        "    month,\n"
        "    COUNT(*) AS n_rows,\n"
        "    ROUND(SUM(value), 2) AS total_value,\n"
        "    ROUND(AVG(value), 4) AS avg_value,\n"
        "    CASE\n"
        f"        WHEN SUM(value) >= {hi} THEN 'high'\n"
        f"        WHEN SUM(value) >= {lo} THEN 'mid'\n"
        "        ELSE 'low'\n"
        "    END AS value_band\n"
        "FROM base\n"
        "GROUP BY entity_id, month\n"
    )


def _int_combo_sql(a: str, b: str, rng: random.Random) -> str:
    weight = round(rng.uniform(0.5, 1.5), 2)
    min_rows = rng.randint(0, 2)
    total = f"a.total_value * {weight} + COALESCE(b.total_value, 0)"
    n_rows = "a.n_rows + COALESCE(b.n_rows, 0)"
    return (
        "SELECT\n"
        "    a.entity_id,\n"
        "    a.month,\n"
        f"    {n_rows} AS n_rows,\n"
        f"    ROUND({total}, 2) AS total_value,\n"
        f"    ROUND(({total}) / NULLIF({n_rows}, 0), 4) AS avg_value,\n"
        "    CASE\n"
        "        WHEN b.entity_id IS NULL THEN 'only_' || a.value_band\n"
        "        WHEN a.value_band = b.value_band THEN a.value_band\n"
        "        ELSE 'mixed'\n"
        "    END AS value_band\n"
        f"FROM {_ref('intermediate', a)} AS a\n"
        f"LEFT JOIN {_ref('intermediate', b)} AS b\n"
        "    ON a.entity_id = b.entity_id AND a.month = b.month\n"
        f"WHERE a.n_rows > {min_rows}\n"
    )


def _mart_sql(parents: list[str], rng: random.Random) -> str:
    cols = "entity_id, month, n_rows, total_value, value_band"
    union = "\n    UNION ALL\n".join(
        f"    SELECT {cols} FROM {_ref('intermediate', p)}" for p in parents
    )
    major = rng.choice([10, 50, 100, 500])
    return (
        "WITH combined AS (\n"
        f"{union}\n"
        "),\n"
        "monthly AS (\n"
        "    SELECT\n"
        "        month,\n"
        "        value_band,\n"
        "        COUNT(DISTINCT entity_id) AS entities,\n"
        "        SUM(n_rows) AS n_rows,\n"
        "        SUM(total_value) AS total_value\n"
        "    FROM combined\n"
        "    GROUP BY month, value_band\n"
        ")\n"
        "SELECT\n"
        "    month,\n"
        "    value_band,\n"
        "    entities,\n"
        "    n_rows,\n"
        "    ROUND(total_value, 2) AS total_value,\n"
        "    ROUND(total_value / NULLIF(n_rows, 0), 4) AS avg_value,\n"
        "    RANK() OVER (PARTITION BY month ORDER BY total_value DESC) AS band_rank,\n"
        f"    CASE WHEN entities >= {major} THEN TRUE ELSE FALSE END AS is_major_band\n"
        "FROM monthly\n"
    )


def _pick_dim(src: Source, rng: random.Random) -> tuple[str, str] | None:
    if not src.dims or rng.random() < 0.4:
        return None
    return rng.choice(src.dims)


def build_models(n_models: int, seed: int = 7) -> list[Model]:
    """Build the model graph: ~50 models downstream of stg_orders, the rest independent of it."""
    if n_models < MIN_MODELS:
        raise ValueError(f"need at least {MIN_MODELS} models, got {n_models}")
    rng = random.Random(seed)
    models: list[Model] = []

    def add(schema: str, name: str, sql: str, parents: list[str]) -> None:
        models.append(Model(schema, name, sql, parents))

    # Layer 1: core staging models, one per source table.
    staging: list[StagingInfo] = []
    for src in SOURCES:
        name = f"stg_{src.table}"
        add("staging", name, _staging_sql(src, None), [])
        staging.append(StagingInfo(name, src))
    orders_stg = next(s for s in staging if s.source.table == "orders")
    others_stg = [s for s in staging if s is not orders_stg]

    # The stg_orders family: exactly ORDERS_FAMILY models downstream (direct + transitive).
    orders_ints: list[str] = []
    for k in range(ORDERS_DIRECT):
        name = f"int_orders_{k:02d}"
        dim = _pick_dim(orders_stg.source, rng)
        parents = [CHANGED_MODEL] + ([f"staging.{dim[0]}"] if dim else [])
        add("intermediate", name, _int_from_staging_sql(orders_stg, dim, rng), parents)
        orders_ints.append(name)

    rest = n_models - len(models) - ORDERS_COMBOS - ORDERS_MARTS
    n_stg = round(rest * 0.15)
    n_int1 = round(rest * 0.30)
    n_int2 = round(rest * 0.30)
    n_marts = rest - n_stg - n_int1 - n_int2

    # Extra staging variants (never stg_orders-derived: they read raw tables).
    for k in range(n_stg):
        src = SOURCES[k % len(SOURCES)]
        name = f"stg_{src.table}_v{k:04d}"
        add("staging", name, _staging_sql(src, k % 7), [])
        others_stg.append(StagingInfo(name, src))

    other_ints: list[str] = []
    for k in range(n_int1):
        stg = rng.choice(others_stg)
        dim = _pick_dim(stg.source, rng)
        name = f"int_{stg.source.table}_{k:04d}"
        parents = [f"staging.{stg.name}"] + ([f"staging.{dim[0]}"] if dim else [])
        add("intermediate", name, _int_from_staging_sql(stg, dim, rng), parents)
        other_ints.append(name)

    # The rest of the stg_orders family: combos (some chained) and marts.
    orders_combos: list[str] = []
    for k in range(ORDERS_COMBOS):
        name = f"int_orders_combo_{k:02d}"
        a = orders_ints[k % len(orders_ints)] if k < 12 or not orders_combos else rng.choice(orders_combos)
        b = rng.choice(other_ints + orders_ints)
        add("intermediate", name, _int_combo_sql(a, b, rng), [f"intermediate.{a}", f"intermediate.{b}"])
        orders_combos.append(name)
    for k in range(ORDERS_MARTS):
        name = f"mart_orders_{k:02d}"
        parents = rng.sample(orders_combos, 2)
        add("marts", name, _mart_sql(parents, rng), [f"intermediate.{p}" for p in parents])

    # Intermediate layer 2 and marts for the rest of the graph.
    pool = list(other_ints)
    for k in range(n_int2):
        name = f"int_combo_{k:04d}"
        a, b = rng.sample(pool, 2)
        add("intermediate", name, _int_combo_sql(a, b, rng), [f"intermediate.{a}", f"intermediate.{b}"])
        pool.append(name)
    for k in range(n_marts):
        name = f"mart_{k:04d}"
        parents = rng.sample(pool, rng.randint(1, 3))
        add("marts", name, _mart_sql(parents, rng), [f"intermediate.{p}" for p in parents])

    assert len(models) == n_models, (len(models), n_models)
    return models


def downstream_of(models: list[Model], fqn: str) -> set[str]:
    """All models downstream (direct and transitive) of the given model."""
    children: dict[str, list[str]] = {}
    for m in models:
        for p in m.parents:
            children.setdefault(p, []).append(m.fqn)
    seen: set[str] = set()
    stack = [fqn]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return seen


# --------------------------------------------------------------------------- writers


def _render(sql: str, ref: Callable[[str, str], str], src: Callable[[str, str], str]) -> str:
    sql = _REF.sub(lambda m: ref(m.group(1), m.group(2)), sql)
    return _SRC.sub(lambda m: src(m.group(1), m.group(2)), sql)


def _plain(sql: str) -> str:
    return _render(sql, lambda s, n: f"{s}.{n}", lambda s, t: f"{s}.{t}")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_sluice(models: list[Model], root: Path) -> Path:
    """Write the Sluice project; returns the warehouse DuckDB path to seed."""
    _write(root / "sluice.yml", "name: bench\ndialect: duckdb\n")
    lines = ["sources:", f"  - name: {SOURCE_NAME}", "    tables:"]
    for src in SOURCES:
        cols = ", ".join(f"{{name: {c.name}}}" for c in src.columns)
        lines += [f"      - name: {src.table}", f"        columns: [{cols}]"]
    _write(root / "models" / "sources.yml", "\n".join(lines) + "\n")
    for m in models:
        _write(root / "models" / m.schema / f"{m.name}.sql", _plain(m.sql))
    (root / ".sluice").mkdir(parents=True, exist_ok=True)
    return root / ".sluice" / "warehouse.duckdb"


def write_sqlmesh(models: list[Model], root: Path, threads: int) -> Path:
    """Write the SQLMesh project; returns the DuckDB path to seed."""
    _write(
        root / "config.yaml",
        "gateways:\n"
        "  local:\n"
        "    connection:\n"
        "      type: duckdb\n"
        "      database: warehouse.duckdb\n"
        f"      concurrent_tasks: {threads}\n"
        "default_gateway: local\n"
        "model_defaults:\n"
        "  dialect: duckdb\n",
    )
    lines: list[str] = []
    for src in SOURCES:
        lines += [f"- name: {SOURCE_NAME}.{src.table}", "  columns:"]
        lines += [f"    {c.name}: {c.type.replace(',', ', ')}" for c in src.columns]
    _write(root / "external_models.yaml", "\n".join(lines) + "\n")
    for m in models:
        header = f"MODEL (\n  name {m.fqn},\n  kind FULL\n);\n\n"
        _write(root / "models" / m.schema / f"{m.name}.sql", header + _plain(m.sql))
    return root / "warehouse.duckdb"


DBT_SCHEMA_MACRO = """\
{% macro generate_schema_name(custom_schema_name, node) -%}
    {#- prod builds into the plain schema; other targets get a _<target> suffix -#}
    {%- set base = custom_schema_name if custom_schema_name is not none else target.schema -%}
    {%- if target.name == 'prod' -%}
        {{ base | trim }}
    {%- else -%}
        {{ base | trim }}_{{ target.name }}
    {%- endif -%}
{%- endmacro %}
"""


def write_dbt(models: list[Model], root: Path, threads: int) -> Path:
    """Write the dbt project (profiles.yml inside it); returns the DuckDB path to seed."""
    schema_cfg = "".join(f"    {s}:\n      +schema: {s}\n" for s in SCHEMAS)
    _write(
        root / "dbt_project.yml",
        "name: bench\n"
        "version: '1.0.0'\n"
        "profile: bench\n"
        "model-paths: ['models']\n"
        "macro-paths: ['macros']\n"
        "flags:\n"
        "  send_anonymous_usage_stats: false\n"
        "models:\n"
        "  bench:\n"
        "    +materialized: table\n"
        f"{schema_cfg}",
    )
    outputs = "".join(
        f"    {t}:\n      type: duckdb\n      path: warehouse.duckdb\n"
        f"      schema: main\n      threads: {threads}\n"
        for t in ("prod", "dev")
    )
    _write(root / "profiles.yml", f"bench:\n  target: prod\n  outputs:\n{outputs}")
    _write(root / "macros" / "generate_schema_name.sql", DBT_SCHEMA_MACRO)
    lines = ["version: 2", "sources:", f"  - name: {SOURCE_NAME}", f"    schema: {SOURCE_NAME}"]
    lines.append("    tables:")
    lines += [f"      - name: {src.table}" for src in SOURCES]
    _write(root / "models" / "sources.yml", "\n".join(lines) + "\n")
    for m in models:
        sql = _render(
            m.sql,
            lambda _s, n: "{{ ref('" + n + "') }}",
            lambda s, t: "{{ source('" + s + "', '" + t + "') }}",
        )
        _write(root / "models" / m.schema / f"{m.name}.sql", sql)
    return root / "warehouse.duckdb"


def tool_python(tool: str) -> str:
    """The interpreter whose duckdb writes a tool's database (each tool pins its own duckdb)."""
    venv = {"sqlmesh": VENVS_DIR / "sqlmesh", "dbt": VENVS_DIR / "dbt"}.get(tool)
    if venv is not None and (venv / "bin" / "python").exists():
        return str(venv / "bin" / "python")
    return sys.executable


_SEED_SCRIPT = (
    "import sys, duckdb\n"
    "con = duckdb.connect(sys.argv[1])\n"
    "con.execute(open(sys.argv[2]).read())\n"
    "con.close()\n"
)


def seed_database(db_path: Path, python: str, sql_path: Path) -> None:
    """Create the raw source tables in db_path with the given interpreter's duckdb."""
    db_path.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".wal"):
        Path(str(db_path) + suffix).unlink(missing_ok=True)
    subprocess.run([python, "-c", _SEED_SCRIPT, str(db_path), str(sql_path)], check=True)


def project_dir(n_models: int, tool: str, base: Path = WORK_DIR) -> Path:
    """Where the project for one tool and size lives."""
    return base / f"n{n_models}" / tool


def generate(
    n_models: int,
    tools: tuple[str, ...] = TOOLS,
    base: Path = WORK_DIR,
    threads: int = 2,
) -> dict[str, Path]:
    """Generate fresh projects (and seeded databases) for each tool; returns their folders."""
    models = build_models(n_models)
    sql_path = base / f"n{n_models}" / "seed.sql"
    _write(sql_path, seed_sql())
    out: dict[str, Path] = {}
    for tool in tools:
        root = project_dir(n_models, tool, base)
        if root.exists():
            shutil.rmtree(root)
        root.mkdir(parents=True)
        if tool == "sluice":
            db = write_sluice(models, root)
        elif tool == "sqlmesh":
            db = write_sqlmesh(models, root, threads)
        elif tool == "dbt":
            db = write_dbt(models, root, threads)
        else:
            raise ValueError(f"unknown tool {tool!r}")
        seed_database(db, tool_python(tool), sql_path)
        out[tool] = root
    return out


def apply_change(root: Path) -> None:
    """Change one column expression of staging.stg_orders in a generated project (any tool)."""
    schema, name = CHANGED_MODEL.split(".")
    path = root / "models" / schema / f"{name}.sql"
    text = path.read_text()
    if CHANGE_FROM not in text:
        raise RuntimeError(f"change marker not found in {path}")
    path.write_text(text.replace(CHANGE_FROM, CHANGE_TO, 1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, nargs="+", default=[200])
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--out", type=Path, default=WORK_DIR)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    for n in args.models:
        models = build_models(n)
        down = downstream_of(models, CHANGED_MODEL)
        dirs = generate(n, tuple(args.tools), args.out, args.threads)
        print(f"N={n}: {len(models)} models, {len(down)} downstream of {CHANGED_MODEL}")
        for tool, root in dirs.items():
            print(f"  {tool:8s} {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
