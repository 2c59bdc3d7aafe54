"""Which repository's production writes each schema of a warehouse. Production's views keep the
plain names consumers read (`marts.orders`), so two repositories on one warehouse that both want
`marts` would replace each other's views: the first to write a schema claims it, and the other is
refused with both named. Claims live in the installation's main store, shared by every
repository's namespace.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from runner.errors import EnvError
from runner.state.schema import schema_claims
from runner.state.store import StateStore


class SchemaConflict(EnvError):
    """A production schema another repository's production already writes."""


class SchemaClaims:
    def __init__(self, state: StateStore):
        self.store = state.registry()

    def owners(self, warehouse: str, schemas: Iterable[str]) -> dict[str, str]:
        """schema -> the repository whose production writes it."""
        with self.store.engine.connect() as conn:
            rows = conn.execute(sa.select(schema_claims.c.schema, schema_claims.c.owner)
                                .where(schema_claims.c.warehouse == warehouse,
                                       schema_claims.c.schema.in_(sorted(set(schemas))))).all()
        return {str(schema): str(owner) for schema, owner in rows}

    def claim(self, warehouse: str, schemas: Iterable[str], owner: str) -> None:
        """Claim `schemas` of `warehouse` for `owner`'s production, or refuse when another
        repository holds one of them."""
        wanted = sorted(set(schemas))
        for _ in range(3):  # two first claims at once: one insert wins, the other reads it
            owners = self.owners(warehouse, wanted)
            taken = {schema: other for schema, other in owners.items() if other != owner}
            if taken:
                schema, other = sorted(taken.items())[0]
                more = f" (and {len(taken) - 1} more schemas)" if len(taken) > 1 else ""
                raise SchemaConflict(
                    f"production schema {schema!r}{more} on warehouse {warehouse} is written by "
                    f"{other}; {owner} cannot write it too. Rename the schema in one of the two "
                    "repositories, or give one of them its own warehouse connection")
            missing = [schema for schema in wanted if schema not in owners]
            if not missing:
                return
            try:
                with self.store.engine.begin() as conn:
                    conn.execute(schema_claims.insert(), [
                        {"warehouse": warehouse, "schema": schema, "owner": owner,
                         "claimed_at": time.time()} for schema in missing])
                return
            except IntegrityError:
                continue
        raise EnvError(f"could not claim the production schemas of {owner} on {warehouse}; try again",
                       transient=True)

    def release(self, warehouse: str, owner: str, schemas: Iterable[str] | None = None) -> int:
        """Give up claims (an operator moving a repository elsewhere); returns how many."""
        query = schema_claims.delete().where(schema_claims.c.warehouse == warehouse,
                                             schema_claims.c.owner == owner)
        if schemas is not None:
            query = query.where(schema_claims.c.schema.in_(sorted(set(schemas))))
        with self.store.engine.begin() as conn:
            return int(conn.execute(query).rowcount or 0)
