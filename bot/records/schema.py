"""The service's own tables in the state store: the inbox of webhook deliveries, runs with their
logs and reports, each merge request's report comment, and the audit log; with their migrations.

They live in the same database as the runner's state, as a family of their own
(`sluice_records_version`): the runner knows nothing of them.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from runner.state.schema import Migration, Schema, add_column, version_table

metadata = sa.MetaData()
records_version = version_table("sluice_records_version", metadata)

# Every delivery accepted, stored before it is answered (see inbox.py).
events = sa.Table(
    "sluice_events", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("forge", sa.String(16), nullable=False),
    sa.Column("delivery_id", sa.String(128), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("repository", sa.String(255)),
    sa.Column("number", sa.Integer),
    sa.Column("event", sa.Text),  # the normalised event (bot.events JSON); NULL when ignored
    sa.Column("received_at", sa.Float, nullable=False),
    sa.Column("dispatched_at", sa.Float),  # handed to the broker
    sa.Column("done_at", sa.Float),  # a worker finished with it
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    # The installation that received it (NULL: stored before installations had names). Added in 2.
    sa.Column("installation", sa.String(64)),
    # The lock the event waits for (its work is parked until the lock is free). Added in 2.
    sa.Column("waiting_for", sa.String(255)),
    sa.Column("message_id", sa.String(64)),  # the broker's message, to ask whether it still holds it
    # bot.events.identity of the event (added in 4): a second delivery of the same event, under
    # whatever delivery id, is a duplicate. NULL for ignored deliveries.
    sa.Column("content_key", sa.String(64)),
    sa.UniqueConstraint("forge", "delivery_id", name="uq_sluice_events_delivery"),
    sa.Index("uq_sluice_events_content", "forge", "content_key", unique=True),
)

runs = sa.Table(
    "sluice_runs", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.Integer),
    sa.Column("forge", sa.String(16), nullable=False),
    sa.Column("repository", sa.String(255), nullable=False),
    sa.Column("number", sa.Integer, nullable=False),
    sa.Column("sha", sa.String(64)),
    sa.Column("kind", sa.String(32), nullable=False),  # RunKind: pipeline, promote, deploy, …
    sa.Column("environment", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),  # queued running success failed superseded error
    sa.Column("summary", sa.Text, nullable=False, default=""),
    sa.Column("report", sa.Text, nullable=False, default=""),
    sa.Column("log", sa.Text, nullable=False, default=""),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("policy", sa.Text),  # the effective policy of the run (JSON); added after the first release
    sa.Column("waiting_for", sa.Text),  # what a waiting run waits for, in a user's words (added in 2)
    sa.Index("ix_sluice_runs_mr", "forge", "repository", "number"),
)

comments = sa.Table(
    "sluice_comments", metadata,
    sa.Column("forge", sa.String(16), primary_key=True),
    sa.Column("repository", sa.String(255), primary_key=True),
    sa.Column("number", sa.Integer, primary_key=True),
    sa.Column("comment_id", sa.BigInteger, nullable=False),
    sa.Column("history", sa.Text, nullable=False, default=""),  # one line per run
    sa.Column("report", sa.Text),  # the report part last posted, for in-place updates (added in 2)
)

# Who did what, when: promotions, approvals, overrides, locks (see audit.py).
audit = sa.Table(
    "sluice_audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("actor", sa.String(255), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("forge", sa.String(16)),
    sa.Column("repository", sa.String(255)),
    sa.Column("number", sa.Integer),
    sa.Column("sha", sa.String(64)),
    sa.Column("environment", sa.String(64)),
    sa.Column("detail", sa.Text, nullable=False, default="{}"),
    sa.Index("ix_sluice_audit_mr", "forge", "repository", "number"),
)


def _first(conn: Connection) -> None:
    # A store from before the split already holds these tables (the state family's versions 2
    # and 4 made them): create what is missing, add what an older one lacks.
    metadata.create_all(conn, tables=[events, runs, comments, audit], checkfirst=True)
    add_column(conn, runs, "policy")


def _second(conn: Connection) -> None:
    """Installations, waiting events and runs, and the report kept for in-place updates."""
    for table, name in ((events, "installation"), (events, "waiting_for"), (runs, "waiting_for"),
                        (comments, "report")):
        add_column(conn, table, name)


def _fourth(conn: Connection) -> None:
    """Events deduplicated by what they are, not only by their delivery id."""
    add_column(conn, events, "content_key")
    index = next(i for i in events.indexes if i.name == "uq_sluice_events_content")
    index.create(conn, checkfirst=True)


MIGRATIONS: list[Migration] = [_first, _second, lambda conn: add_column(conn, events, "message_id"),
                               _fourth]

RECORDS = Schema("records", metadata, records_version, MIGRATIONS, lock_key=7_215_813_002)
