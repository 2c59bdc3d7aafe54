"""Two repositories on one warehouse: each repository's physical tables and branch environments
carry its namespace, production schemas belong to one repository per warehouse, and promotion,
close handling and the janitor touch only what the repository's own state recorded. On a DuckDB
file and on PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from runner.engines import Engine, open_engine
from runner.environments import drop, promote
from runner.errors import EnvError
from runner.janitor import run_janitor
from runner.naming import Layout, bounded, environment_schema, namespace_of, physical_schema
from runner.pipeline import run_pipeline
from runner.state.claims import SchemaConflict
from runner.state.schema import MIGRATIONS
from runner.state.store import StateStore
from tests.support.paths import DEMO
from tests.support.repos import Shop
from tests.support.warehouses import ENGINES, fresh_database, physical_objects, rows, views_sql

ORDERS = "models/marts/orders.sql"
FAR = 10 * 365 * 86400.0


@dataclass
class Repo:
    """One repository as the bot keeps it: its checkout, its state namespace, its layout."""

    shop: Shop
    state: StateStore
    owner: str
    namespace: str


@pytest.fixture(params=ENGINES)
def warehouse_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'shared.duckdb'}"
    else:
        with fresh_database() as url:
            yield url


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[Engine]:
    engine = open_engine(warehouse_url)
    yield engine
    engine.close()


def repo(tmp_path: Path, name: str, owner: str, namespace: str) -> Repo:
    root = tmp_path / name
    shutil.copytree(DEMO, root)
    state = StateStore(f"sqlite:///{tmp_path / 'state' / 'state.db'}", namespace=f"sluice_{namespace}",
                       layout=Layout(namespace, owner))
    return Repo(Shop(root), state, owner, namespace)


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Repo, Repo]]:
    """The same project twice (same model names), B's orders ten times A's amounts."""
    a = repo(tmp_path, "a", "gitlab:team-a/shop", "team_a_shop")
    b = repo(tmp_path, "b", "gitlab:team-b/shop", "team_b_shop")
    b.shop.edit(ORDERS, "p.total_amount as amount", "p.total_amount * 10 as amount")
    yield a, b
    a.state.close()
    b.state.close()


def views(engine: Engine) -> dict[tuple[str, str], str]:
    """Every view of the warehouse with its definition, byte for byte."""
    return {(schema, name): sql for schema, name, sql in rows(engine, views_sql(engine))}


def of_namespace(engine: Engine, namespace: str) -> set[str]:
    return {o for o in physical_objects(engine) if o.startswith(f"sluice__{namespace}__")}


def amounts(engine: Engine, schema: str) -> float:
    [(total,)] = rows(engine, f'select sum(amount) from "{schema}"."orders"')
    return float(total)


def test_two_repositories_with_the_same_models_never_see_or_change_each_other(
        two: tuple[Repo, Repo], warehouse: Engine) -> None:
    a, b = two
    assert run_pipeline(a.shop.load(), a.state, warehouse, "prod").ok
    a_prod = views(warehouse)

    # Both open MR !7: two environments, each reading its own repository's tables.
    assert run_pipeline(a.shop.load(), a.state, warehouse, "mr_7").ok
    assert run_pipeline(b.shop.load(), b.state, warehouse, "mr_7").ok
    a_mr, b_mr = (environment_schema("marts", "mr_7", r.namespace) for r in (a, b))
    assert (a_mr, b_mr) == ("marts__team_a_shop__mr_7", "marts__team_b_shop__mr_7")
    assert amounts(warehouse, b_mr) == pytest.approx(10 * amounts(warehouse, a_mr))
    assert amounts(warehouse, "marts") == pytest.approx(amounts(warehouse, a_mr))
    reads = warehouse.view_reads()
    for r in (a, b):
        mine = {v: t for v, t in reads.items() if f"__{r.namespace}__mr_7." in v}
        assert mine and all(t.startswith(f"sluice__{r.namespace}__") for ts in mine.values() for t in ts)
    assert of_namespace(warehouse, a.namespace) and of_namespace(warehouse, b.namespace)

    # B's merge wants production schemas A's production writes: refused, naming both.
    before = views(warehouse)
    with pytest.raises(SchemaConflict) as refused:
        promote(warehouse, b.state, "mr_7", "prod")
    message = str(refused.value)
    assert "\n" not in message and a.owner in message and b.owner in message and "'marts'" in message
    with pytest.raises(SchemaConflict):
        run_pipeline(b.shop.load(), b.state, warehouse, "prod")
    assert views(warehouse) == before
    assert b.state.environment("prod") is None

    # B closes !7: A's !7 stays, view for view.
    a_views = {k: v for k, v in views(warehouse).items() if k[0].endswith(f"__{a.namespace}__mr_7")}
    drop(warehouse, b.state, "mr_7")
    assert not [k for k in views(warehouse) if k[0].endswith(f"__{b.namespace}__mr_7")]
    assert {k: v for k, v in views(warehouse).items() if k[0].endswith(f"__{a.namespace}__mr_7")} == a_views

    # B's janitor, with everything of B's long expired, drops B's tables and none of A's.
    a_objects = of_namespace(warehouse, a.namespace)
    namespaced = ("sluice__team_a", "sluice__team_b")
    legacy = {o for o in physical_objects(warehouse) if not o.startswith(namespaced)}
    report = run_janitor(warehouse, b.state, ttl_seconds=0, now=1e12)
    assert report.objects and all(o.startswith(f"sluice__{b.namespace}__") for o in report.objects)
    assert of_namespace(warehouse, b.namespace) == set()
    assert of_namespace(warehouse, a.namespace) == a_objects
    assert {o for o in physical_objects(warehouse) if not o.startswith(namespaced)} == legacy == set()

    # A merges !7: its production moves, and still nothing of B's is read anywhere.
    promote(warehouse, a.state, "mr_7", "prod")
    assert views(warehouse)[("marts", "orders")] == a_prod[("marts", "orders")]  # same data, same table
    assert amounts(warehouse, "marts") == pytest.approx(amounts(warehouse, a_mr))
    run_janitor(warehouse, a.state, ttl_seconds=0, now=1e12)
    assert amounts(warehouse, "marts") == pytest.approx(amounts(warehouse, a_mr))


def test_a_repository_may_write_production_schemas_no_other_writes(
        two: tuple[Repo, Repo], warehouse: Engine) -> None:
    """Production schemas are claimed per schema: B's production in schemas of its own works."""
    a, b = two
    for rel in sorted(p.relative_to(b.shop.root).as_posix() for p in b.shop.root.rglob("*")
                      if p.is_file() and p.suffix in (".sql", ".yml")):
        text = b.shop.read(rel)
        for schema in ("staging", "marts", "raw"):
            text = text.replace(f"{schema}.", f"b_{schema}.")
        b.shop.write(rel, text)
    for folder in ("staging", "marts"):
        (b.shop.root / "models" / folder).rename(b.shop.root / "models" / f"b_{folder}")
    b.shop.write("sluice.yml", b.shop.read("sluice.yml").replace("schema: raw", "schema: b_raw"))
    assert run_pipeline(a.shop.load(), a.state, warehouse, "prod").ok
    assert run_pipeline(b.shop.load(), b.state, warehouse, "prod").ok
    assert amounts(warehouse, "b_marts") == pytest.approx(10 * amounts(warehouse, "marts"))


def test_environments_from_before_namespaces_keep_their_names(tmp_path: Path, warehouse: Engine) -> None:
    """State version 9: what a store already had keeps its names (nothing is orphaned); what is
    made from then on carries the repository's namespace."""
    root = tmp_path / "shop"
    shutil.copytree(DEMO, root)
    shop = Shop(root)
    url = f"sqlite:///{tmp_path / 'state' / 'state__sluice_gitlab_data_shop.db'}"
    old = StateStore(url)  # as a store from before: no layout
    assert run_pipeline(shop.load(), old, warehouse, "prod").ok
    assert run_pipeline(shop.load(), old, warehouse, "mr_1").ok
    old.close()
    # Back to version 8's shape: no namespace column, no claims.
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM sluice_schema_version WHERE version >= 9")
        conn.exec_driver_sql("DROP TABLE sluice_schema_claims")
        for column in ("namespace", "verdict", "verdict_detail", "verdict_commit", "verdict_at"):
            conn.exec_driver_sql(f"ALTER TABLE sluice_environments DROP COLUMN {column}")
    engine.dispose()
    legacy_tables = physical_objects(warehouse)
    assert all(not o.startswith("sluice__data_shop__") for o in legacy_tables)

    store = StateStore(url, layout=Layout("data_shop", "gitlab:data/shop"))
    try:
        assert store.version == len(MIGRATIONS)  # 9 and every later migration ran
        mr_1 = store.environment("mr_1")
        assert mr_1 is not None and mr_1.namespace == ""
        assert ("marts__mr_1", "orders") in views(warehouse)
        # A new environment is namespaced and reuses the old tables (nothing is rebuilt).
        again = run_pipeline(shop.load(), store, warehouse, "mr_2")
        assert again.ok and again.built == 0
        assert ("marts__data_shop__mr_2", "orders") in views(warehouse)
        # The old environment is dropped by its own names: none is left behind.
        drop(warehouse, store, "mr_1")
        assert not [k for k in views(warehouse) if k[0].endswith("__mr_1")]
        # A change builds into the namespace; the janitor keeps what views read.
        shop.edit(ORDERS, "p.total_amount as amount", "p.total_amount * 2 as amount")
        changed = run_pipeline(shop.load(), store, warehouse, "mr_3")
        built = {n.physical for n in changed.plan.to_build}
        assert built and all(p.startswith("sluice__data_shop__") for p in built)
        run_janitor(warehouse, store, ttl_seconds=0, now=1e12)
        assert amounts(warehouse, "marts") == amounts(warehouse, "marts__data_shop__mr_2")
    finally:
        store.close()


def test_production_claims_survive_a_restart_and_a_second_installation_of_the_state(
        two: tuple[Repo, Repo], warehouse: Engine, tmp_path: Path) -> None:
    a, b = two
    assert run_pipeline(a.shop.load(), a.state, warehouse, "prod").ok
    reopened = StateStore(b.state.url, namespace=f"sluice_{b.namespace}", layout=Layout(b.namespace, b.owner))
    try:
        with pytest.raises(EnvError, match="is written by gitlab:team-a/shop"):
            run_pipeline(b.shop.load(), reopened, warehouse, "prod")
    finally:
        reopened.close()


@pytest.mark.parametrize(("name", "expected"), [
    ("data/shop", "data_shop"), ("Data/Shop-2024", "data_shop_2024"), ("2fast/x", "r_2fast_x"),
    ("a//b__c", "a_b_c"), ("---", "repo"),
])
def test_a_repository_s_default_namespace_is_a_short_identifier(name: str, expected: str) -> None:
    assert namespace_of(name) == expected


def test_long_names_are_cut_with_a_hash_and_never_collide() -> None:
    long = namespace_of("analytics-engineering/warehouse-models-for-finance")
    other = namespace_of("analytics-engineering/warehouse-models-for-marketing")
    assert len(long) <= 20 and long != other and long.replace("_", "").isalnum()
    one, two_ = (physical_schema(f"reporting_{x}_{'y' * 50}", long) for x in "ab")
    assert len(one.encode()) == len(two_.encode()) == 63 and one != two_
    assert bounded("short") == "short"
    assert environment_schema("marts", "prod", long) == "marts"
