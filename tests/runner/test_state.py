"""The state store (`runner.state.StateStore`), on SQLite and on PostgreSQL alike: a versioned
schema, snapshots, environments and their history; and clear errors when it cannot be used.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.records.runs import RunLog
from runner.errors import EnvError, StateError
from runner.state.records import SnapshotRecord
from runner.state.schema import MIGRATIONS, schema_version
from runner.state.store import StateStore

TABLES = {"sluice_schema_version", "sluice_snapshots", "sluice_environments",
          "sluice_environment_models", "sluice_environment_history"}


def snapshot(fingerprint: str, name: str = "marts.orders", **changes: object) -> SnapshotRecord:
    schema, table = name.split(".")
    values: dict[str, object] = {
        "fingerprint": fingerprint, "name": name, "kind": "model",
        "physical_schema": f"sluice__{schema}", "physical_table": f"{table}__{fingerprint[:10]}",
        "materialized": "table", "data_version": fingerprint,
        "canonical": "SELECT o.order_id, o.amount FROM staging.stg_orders AS o WHERE o.note = 'é'",
        "parents": {"staging.stg_orders": "a" * 64, "source:ext.spin": "source:ext.spin"},
        "columns": ("order_id", "amount"), "reads_physical": ("sluice__staging.stg_orders__aaaaaaaaaa",),
        "build_seconds": 1.25,
    }
    values.update(changes)
    return SnapshotRecord(**values)  # type: ignore[arg-type]


def fp(char: str) -> str:
    return char * 64


def versions(store: StateStore) -> list[tuple[int, float]]:
    with store.begin() as conn:
        query = sa.select(schema_version.c.version, schema_version.c.applied_at)
        return [tuple(r) for r in conn.execute(query.order_by(schema_version.c.version))]


def test_a_new_store_records_its_schema_version_and_reopening_it_migrates_nothing(state_url: str) -> None:
    store = StateStore(state_url)
    assert store.version == len(MIGRATIONS)
    applied = versions(store)
    assert [v for v, _ in applied] == list(range(1, len(MIGRATIONS) + 1))
    assert set(sa.inspect(store.engine).get_table_names()) >= TABLES
    store.close()

    again = StateStore(state_url)
    try:
        assert again.version == len(MIGRATIONS)
        assert versions(again) == applied  # not applied a second time
    finally:
        again.close()


def test_snapshots_round_trip(state_url: str) -> None:
    store = StateStore(state_url)
    try:
        orders = snapshot(fp("1"))
        view = snapshot(fp("2"), "marts.order_status_counts", materialized="view",
                        columns=("status", "orders"), reused_from=fp("9"),
                        reads_physical=(orders.physical,))
        store.add_snapshot(orders)
        store.add_snapshot(view)

        got = store.snapshots()
        assert set(got) == {fp("1"), fp("2")}
        for original in (orders, view):
            stored = got[original.fingerprint]
            assert stored.created_at > 0 and stored.last_referenced_at > 0
            assert stored == replace(original, created_at=stored.created_at,
                                     last_referenced_at=stored.last_referenced_at)
        assert set(store.snapshots(names=["marts.orders"])) == {fp("1")}
        assert set(store.snapshots(fingerprints=[fp("2"), fp("3")])) == {fp("2")}
        assert store.snapshots(names=[]) == {}

        # A dropped snapshot is no longer live; rebuilding it replaces the dropped record.
        store.mark_dropped([fp("1")])
        assert set(store.snapshots()) == {fp("2")}
        store.add_snapshot(snapshot(fp("1"), build_seconds=2.5))
        assert store.snapshots(fingerprints=[fp("1")])[fp("1")].build_seconds == 2.5
    finally:
        store.close()


def test_environments_and_their_history_round_trip(state_url: str) -> None:
    store = StateStore(state_url)
    try:
        for record in (snapshot(fp("a")), snapshot(fp("b")), snapshot(fp("c"), "marts.customers")):
            store.add_snapshot(record)
        first = store.set_environment("prod", {"marts.orders": fp("a"), "marts.customers": fp("c")},
                                      action="plan")
        second = store.set_environment("prod", {"marts.orders": fp("b"), "marts.customers": fp("c")},
                                       action="promote", source="mr_1")
        store.set_environment("mr_1", {"marts.orders": fp("b")}, action="plan")

        prod = store.environment("prod")
        assert prod is not None
        assert prod.models == {"marts.orders": fp("b"), "marts.customers": fp("c")}
        assert prod.created_at <= prod.updated_at and prod.expires_at is None
        assert [e.name for e in store.environments()] == ["mr_1", "prod"]
        assert store.environment("nope") is None
        assert store.referenced_fingerprints() == {fp("b"), fp("c")}

        latest, earliest = store.history("prod")
        assert (latest.id, latest.action, latest.source) == (second, "promote", "mr_1")
        assert latest.before == {"marts.orders": fp("a"), "marts.customers": fp("c")}
        assert latest.after == {"marts.orders": fp("b"), "marts.customers": fp("c")}
        assert (earliest.id, earliest.action, earliest.before) == (first, "plan", {})
        assert not latest.rolled_back
        store.mark_rolled_back(second)
        assert store.history("prod")[0].rolled_back

        at = time.time() + 3600
        store.mark_expiry("mr_1", at)
        mr = store.environment("mr_1")
        assert mr is not None and mr.expires_at == pytest.approx(at)
        store.delete_environment("mr_1")
        assert store.environment("mr_1") is None
        dropped = store.history("mr_1")[0]
        assert (dropped.action, dropped.before, dropped.after) == ("drop", {"marts.orders": fp("b")}, {})
        with pytest.raises(EnvError):
            store.mark_expiry("mr_1", at)
        with pytest.raises(EnvError):
            store.delete_environment("mr_1")
    finally:
        store.close()

    reopened = StateStore(state_url)
    try:
        prod = reopened.environment("prod")
        assert prod is not None and prod.models["marts.orders"] == fp("b")
        assert [e.action for e in reopened.history("prod")] == ["promote", "plan"]
    finally:
        reopened.close()


def test_an_environment_change_is_pending_until_finished_and_abandoned_leaves_nothing(
        state_url: str) -> None:
    store = StateStore(state_url)
    try:
        for name in "abc":
            store.add_snapshot(snapshot(fp(name)))
        store.set_environment("prod", {"marts.orders": fp("a")}, action="plan")
        before, history = store.environment("prod"), store.history("prod")

        refused = store.changes.begin("prod", {"marts.orders": fp("b")}, "promote", source="mr_1")
        assert (refused.status, refused.before, refused.after) == (
            "pending", {"marts.orders": fp("a")}, {"marts.orders": fp("b")})
        assert [c.id for c in store.changes.pending("prod")] == [refused.id]
        assert store.environment("prod") == before and store.history("prod") == history
        store.changes.abandon(refused.id)
        assert store.changes.pending() == []
        assert store.environment("prod") == before and store.history("prod") == history

        moved = store.changes.begin("prod", {"marts.orders": fp("c")}, "promote", source="mr_2")
        store.changes.finish(moved.id)
        store.changes.finish(moved.id)  # settling twice changes nothing
        record = store.environment("prod")
        assert record is not None and record.models == {"marts.orders": fp("c")}
        latest = store.history("prod")[0]
        assert (latest.id, latest.status, latest.before) == (moved.id, "done", {"marts.orders": fp("a")})
        assert len(store.history("prod")) == len(history) + 1
    finally:
        store.close()


def test_a_store_newer_than_this_sluice_is_refused(state_url: str) -> None:
    store = StateStore(state_url)
    with store.begin() as conn:
        conn.execute(schema_version.insert().values(version=len(MIGRATIONS) + 1, applied_at=time.time()))
    store.close()

    with pytest.raises(StateError) as raised:
        StateStore(state_url)

    assert f"schema version {len(MIGRATIONS) + 1}" in raised.value.message
    assert "upgrade" in raised.value.message


def _check_state_error(url: str) -> StateError:
    with pytest.raises(StateError) as raised:
        StateStore(url)
    error = raised.value
    message = str(error)
    assert message.startswith("cannot open the state store")
    assert "Traceback" not in message and "\n" not in message
    assert error.__cause__ is None and error.__suppress_context__
    return error


@pytest.mark.parametrize("url", [
    pytest.param("not a url", id="unparsable"),
    pytest.param("nosuchdb://somewhere/state", id="unknown-dialect"),
    pytest.param("postgresql+psycopg://postgres:s3cret@127.0.0.1:1/state", id="server-down"),
    pytest.param(f"postgresql+psycopg://postgres@127.0.0.1:5432/missing_{uuid.uuid4().hex[:8]}",
                 id="no-such-database"),
])
def test_a_bad_url_is_a_state_error_without_a_traceback(url: str) -> None:
    error = _check_state_error(url)
    assert "s3cret" not in str(error)  # passwords are never shown


def test_a_sqlite_path_under_a_file_is_a_state_error(tmp_path: Path) -> None:
    (tmp_path / "not_a_dir").write_text("")
    _check_state_error(f"sqlite:///{tmp_path / 'not_a_dir' / 'state.db'}")


def test_a_url_whose_driver_is_not_installed_is_a_state_error() -> None:
    _check_state_error("mysql+mysqldb://sluice@127.0.0.1:3306/state")


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_starting_together_migrate_once(backend: str, tmp_path, request):
    """gunicorn starts its workers at once: each opens the store and none may fail."""
    import threading

    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 's.db'}"
    failures: list[BaseException] = []

    def open_store() -> None:
        try:
            StateStore(url).close()
            StateStore(url, namespace="sluice_team_repo").close()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert StateStore(url).version == len(MIGRATIONS)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_an_older_store_is_upgraded_in_place(backend: str, tmp_path, request):
    """A store made before the run policy column existed (and before the service's records had a
    version table of their own) gains the column, keeping its rows."""
    url = request.getfixturevalue("pg_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'o.db'}"
    store = StateStore(url)
    RunLog(store)
    with store.engine.begin() as conn:
        conn.execute(sa.text("ALTER TABLE sluice_runs DROP COLUMN policy"))
        conn.execute(sa.text("DELETE FROM sluice_schema_version WHERE version = 4"))
        conn.execute(sa.text("DROP TABLE sluice_records_version"))
        conn.execute(sa.text("INSERT INTO sluice_runs (forge, repository, number, kind, status, summary, "
                             "report, log, created_at) VALUES ('gitlab', 'a/b', 1, 'pipeline', 'success', "
                             "'', '', '', 0)"))
    store.close()
    upgraded = StateStore(url)
    RunLog(upgraded)
    assert upgraded.version == len(MIGRATIONS)
    with upgraded.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*), max(policy) FROM sluice_runs")).one() == (1, None)
