"""Environment changes as a recoverable protocol (`runner.state.changes`, `runner.environments`):
a change interrupted between the warehouse and the state store is settled from the warehouse's
actual views by the next change, and the janitor never drops what a view reads. On DuckDB and
PostgreSQL."""

from __future__ import annotations

from runner.engines.base import Engine
from runner.environments import NothingToRollBack, changing, drop, point, promote, rollback
from runner.janitor import run_janitor
from runner.naming import environment_schema, table
from runner.pipeline import run_pipeline
from runner.state.store import StateStore
from tests.support.repos import Shop
from tests.support.warehouses import contents, env_views, physical_objects

ORDERS = "models/marts/orders.sql"
NEW_AMOUNT = ("p.total_amount as amount", "p.total_amount - p.coupon_amount as amount")


def prod_and_mr(shop: Shop, state: StateStore, warehouse: Engine) -> tuple[dict[str, str], dict[str, str]]:
    """Production built from the demo, and mr_1 with orders' amount changed: their mappings."""
    assert run_pipeline(shop.load(), state, warehouse, "prod").ok
    shop.edit(ORDERS, *NEW_AMOUNT)
    assert run_pipeline(shop.load(), state, warehouse, "mr_1").ok
    prod, mr = state.environment("prod"), state.environment("mr_1")
    assert prod is not None and mr is not None and prod.models != mr.models
    return dict(prod.models), dict(mr.models)


def move_views_as_a_dying_worker_did(warehouse: Engine, state: StateStore, environment: str,
                                     mapping: dict[str, str], only: set[str] | None = None) -> None:
    """The warehouse half of a change, as a process that died before telling the state store."""
    snapshots = state.snapshots(fingerprints=mapping.values())
    pairs = []
    for name, fingerprint in sorted(mapping.items()):
        if only is not None and name not in only:
            continue
        schema, view = name.split(".", 1)
        record = snapshots[fingerprint]
        pairs.append((table(environment_schema(schema, environment), view),
                      table(record.physical_schema, record.physical_table)))
    with warehouse.transaction() as cursor:
        warehouse.point_views(cursor, pairs)


def test_a_change_the_warehouse_made_but_the_store_never_heard_of_is_settled_as_done(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    old, new = prod_and_mr(shop, state, warehouse)
    change = state.changes.begin("prod", new, "promote", source="mr_1")
    move_views_as_a_dying_worker_did(warehouse, state, "prod", new)
    assert state.environment("prod").models == old  # type: ignore[union-attr]
    assert env_views(warehouse, "prod") == env_views(warehouse, "mr_1")

    # The next change of production first settles the interrupted one from the views.
    result = promote(warehouse, state, "mr_1", "prod")

    assert result.changed == ()  # the views already showed it
    assert state.environment("prod").models == new  # type: ignore[union-attr]
    assert state.changes.pending() == []
    latest = state.history("prod")[0]
    assert (latest.id, latest.action, latest.status) == (change.id, "promote", "done")
    # and rollback goes back exactly one step: to what production was before the interrupted change
    rollback(warehouse, state, "prod")
    assert state.environment("prod").models == old  # type: ignore[union-attr]


def test_a_change_the_warehouse_never_made_is_abandoned_and_leaves_no_history(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    old, new = prod_and_mr(shop, state, warehouse)
    views, history = env_views(warehouse, "prod"), state.history("prod")
    change = state.changes.begin("prod", new, "promote", source="mr_1")

    with changing(warehouse, state, "prod"):
        pass  # taking production's turn settles what is pending

    assert state.changes.pending() == []
    assert state.history("prod") == history and change.id not in [h.id for h in state.history("prod")]
    assert state.environment("prod").models == old  # type: ignore[union-attr]
    assert env_views(warehouse, "prod") == views


def test_views_moved_halfway_behind_sluices_back_are_recorded_as_the_warehouse_shows_them(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    old, new = prod_and_mr(shop, state, warehouse)
    snapshots = state.snapshots(fingerprints=set(old.values()) | set(new.values()))
    rebuilt = sorted(n for n in new if snapshots[new[n]].physical != snapshots[old[n]].physical)
    first = rebuilt[0]
    state.changes.begin("prod", new, "promote", source="mr_1")
    move_views_as_a_dying_worker_did(warehouse, state, "prod", new, only={first})

    with changing(warehouse, state, "prod"):
        pass

    shown = {**old, first: new[first]}
    assert state.environment("prod").models == shown  # type: ignore[union-attr]
    # Pointing production where the store now says it is changes no view.
    assert point(warehouse, state, "prod", shown, "plan").changed == ()


def test_the_janitor_keeps_what_production_views_read_even_before_the_store_knows(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    _, new = prod_and_mr(shop, state, warehouse)
    state.changes.begin("prod", new, "promote", source="mr_1")
    move_views_as_a_dying_worker_did(warehouse, state, "prod", new)
    data = contents(warehouse, "prod")
    # mr_1 goes away, so nothing the state store records references its new tables any more.
    drop(warehouse, state, "mr_1")
    read_by_prod = set(env_views(warehouse, "prod").values())

    report = run_janitor(warehouse, state, ttl_seconds=0)

    assert read_by_prod <= physical_objects(warehouse)
    assert not read_by_prod & set(report.objects)
    assert contents(warehouse, "prod") == data


def test_a_rollback_asked_again_for_the_same_cause_goes_back_one_step_not_two(
        shop: Shop, state: StateStore, warehouse: Engine) -> None:
    """A `/rollback` whose worker died after the warehouse moved (its change left pending), taken
    up again: the retry finds its own change done and makes no second one."""
    first, second = prod_and_mr(shop, state, warehouse)
    promote(warehouse, state, "mr_1", "prod")  # production's history: plan (first), promote (second)
    last = state.history("prod")[0]
    change = state.changes.begin("prod", first, "rollback", source=f"#{last.id}", rolls_back=last.id,
                                 cause="event:7")
    move_views_as_a_dying_worker_did(warehouse, state, "prod", first)

    again = rollback(warehouse, state, "prod", cause="event:7")

    snapshots = state.snapshots(fingerprints=set(first.values()) | set(second.values()))
    moved = tuple(sorted(n for n in first if snapshots[first[n]].physical != snapshots[second[n]].physical))
    assert "marts.orders" in moved
    assert again.earlier and again.changed == moved and again.dropped == ()
    assert tuple(m.view for m in again.moves) == moved  # production's views have the plain names
    assert state.environment("prod").models == first  # type: ignore[union-attr]
    assert [(h.id, h.action) for h in state.history("prod")[:2]] == [(change.id, "rollback"),
                                                                      (last.id, "promote")]
    assert state.history("prod")[1].rolled_back
    # Asked once more for the same cause, still nothing; another cause goes one step further.
    assert rollback(warehouse, state, "prod", cause="event:7").earlier
    assert len(state.history("prod")) == 3
    try:
        rollback(warehouse, state, "prod", cause="event:8")
    except NothingToRollBack as exc:
        assert exc.created  # production's first build is as far back as it goes
    else:
        raise AssertionError("a second cause should have gone one step further")
