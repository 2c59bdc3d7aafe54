"""Each merge request's sticky report comment: the forge's comment id, the one-line history of the
runs that wrote it, and the report last posted in it, so the next run (or a recomputed merge
gate) edits it in place."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa

from bot.records.schema import RECORDS, comments
from runner.state.store import StateStore


@dataclass(frozen=True)
class ReportComment:
    comment_id: int
    history: str
    report: str  # the report part of the body ("" when stored before it was kept)


class ReportComments:
    def __init__(self, state: StateStore):
        state.ensure(RECORDS)
        self.state = state

    def get(self, forge: str, repository: str, number: int) -> ReportComment | None:
        with self.state.engine.connect() as conn:
            row = conn.execute(sa.select(comments).where(
                comments.c.forge == forge, comments.c.repository == repository,
                comments.c.number == number)).first()
        return ReportComment(int(row.comment_id), row.history, row.report or "") if row is not None else None

    def save(self, forge: str, repository: str, number: int, comment_id: int, history: str,
             report: str) -> None:
        with self.state.engine.begin() as conn:
            conn.execute(comments.delete().where(
                comments.c.forge == forge, comments.c.repository == repository,
                comments.c.number == number))
            conn.execute(comments.insert().values(forge=forge, repository=repository, number=number,
                                                  comment_id=comment_id, history=history, report=report))
