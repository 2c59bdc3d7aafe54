"""The janitor: drops expired environments and physical objects nobody has used for a while.

It only ever drops objects recorded in the state store (so never anything Sluice did not create),
never a physical object that a kept physical view still reads (a reused downstream view may read
an upstream's older table), and never one that any view in the warehouse reads, whatever the state
store says (an interrupted promotion may have moved views the store does not know of yet).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

from runner.engines.base import Engine
from runner.environments import drop as drop_environment
from runner.errors import SluiceError, WarehouseError
from runner.naming import table
from runner.state.store import StateStore

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """`90s`, `30m`, `12h`, `7d`, `2w` -> seconds."""
    match = _DURATION.match(text)
    if not match:
        raise SluiceError(f"cannot read the duration {text!r}: write a number and a unit, e.g. 7d, 12h, 30m")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass
class JanitorReport:
    environments: list[str] = field(default_factory=list)
    objects: list[str] = field(default_factory=list)  # physical objects dropped
    kept_for_views: list[str] = field(default_factory=list)  # unreferenced, but a kept view reads them
    refused: dict[str, str] = field(default_factory=dict)  # the warehouse would not drop them: why


def run_janitor(engine: Engine, state: StateStore, ttl_seconds: float, now: float | None = None,
                dry_run: bool = False) -> JanitorReport:
    now = time.time() if now is None else now
    report = JanitorReport()
    for env in state.environments():
        if env.expires_at is not None and env.expires_at <= now:
            report.environments.append(env.name)
            if not dry_run:
                drop_environment(engine, state, env.name)

    live = state.snapshots()
    referenced = state.referenced_fingerprints()
    physical_of = {fp: rec.physical for fp, rec in live.items()}
    kept_physical = {physical_of[fp] for fp in referenced if fp in physical_of}
    for rec in live.values():
        if rec.last_referenced_at > now - ttl_seconds:
            kept_physical.add(rec.physical)
    # What any view in the warehouse reads stays, whatever the state says; but this store's own
    # physical views keep what they read only while they are kept themselves (below), or a
    # doomed view would keep its upstream tables for another pass.
    recorded = set(physical_of.values())
    for view, reads_of_view in engine.view_reads().items():
        if view in recorded:
            continue
        for relation in reads_of_view:
            if relation in recorded and relation not in kept_physical:
                kept_physical.add(relation)
                report.kept_for_views.append(relation)
    # A kept view keeps what it reads alive, transitively.
    reads = {rec.physical: rec.reads_physical for rec in live.values()}
    stack = list(kept_physical)
    while stack:
        for upstream in reads.get(stack.pop(), ()):
            if upstream not in kept_physical:
                kept_physical.add(upstream)
                report.kept_for_views.append(upstream)
                stack.append(upstream)

    doomed: dict[str, list[str]] = {}
    for fp, rec in live.items():
        if rec.physical not in kept_physical:
            doomed.setdefault(rec.physical, []).append(fp)
    by_physical = {rec.physical: rec for rec in live.values()}
    # Views first, then tables: a view must go before what it reads.
    order = sorted(doomed, key=lambda p: (by_physical[p].materialized != "view", p))
    for physical in order:
        rec = by_physical[physical]
        if dry_run:
            report.objects.append(physical)
            continue
        try:
            with engine.transaction() as cursor:
                engine.drop(cursor, table(rec.physical_schema, rec.physical_table),
                            "view" if rec.materialized == "view" else "table")
        except WarehouseError as exc:  # e.g. a view someone made outside Sluice reads it
            report.refused[physical] = exc.message
            continue
        report.objects.append(physical)
        state.mark_dropped(doomed[physical])
    return report


