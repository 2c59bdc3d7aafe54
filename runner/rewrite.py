"""Turn a model's logical SQL into the SQL a build runs: every model and seed it reads replaced by
the physical table of the snapshot it must read, sources left in place.

Physical objects read other physical objects, never environment views, so a snapshot's data
depends only on its fingerprint.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlglot import exp

from runner.naming import PHYSICAL_PREFIX, table
from runner.project.parsing import parse_canonical, table_references


def physical_query(canonical: str, dialect: str, resolve: Callable[[tuple[str, ...]], str | None],
                   physical: Mapping[str, tuple[str, str]]) -> exp.Query:
    """`physical` maps a model or seed name to its (physical schema, physical table)."""
    query = parse_canonical(canonical, dialect)
    for node in list(table_references(query)):
        name = resolve(tuple(p.name for p in node.parts))
        if name is None:
            continue
        if name in physical:
            schema, name_in_schema = physical[name]
        else:  # a source: read in place
            schema, name_in_schema = name.split(".", 1)
        replacement = table(schema, name_in_schema)
        if name not in physical and node.catalog:  # database.schema.table: keep its database
            replacement.set("catalog", exp.to_identifier(node.catalog, quoted=True))
        # Keep the name the query used as its alias, so `orders.amount` still resolves.
        alias = node.args.get("alias") or exp.TableAlias(this=exp.to_identifier(node.name))
        replacement.set("alias", alias)
        for key in ("joins", "laterals", "pivots", "hints", "sample"):
            if node.args.get(key):
                replacement.set(key, node.args[key])
        node.replace(replacement)
    return query


def physical_reads(query: exp.Query) -> tuple[str, ...]:
    """The physical objects a rewritten query reads (what a kept view keeps alive)."""
    return tuple(sorted({f"{t.db}.{t.name}" for t in query.find_all(exp.Table)
                         if t.db.startswith(PHYSICAL_PREFIX)}))
