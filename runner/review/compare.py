"""Compare two environments model by model in the warehouse: which models point at different
snapshots, and their data diffs (`sluice diff ENV_A ENV_B`, `/diff <model>`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from runner.engines.base import Engine
from runner.errors import EnvError, SluiceError
from runner.naming import table
from runner.project.nodes import Project
from runner.review.datadiff import DataDiff, DiffCaps, diff_relations
from runner.review.predicate import parse_predicate
from runner.review.summary import pii_columns, unique_key
from runner.state.store import StateStore


@dataclass(frozen=True)
class ModelComparison:
    name: str
    before: str | None  # physical object in the first environment (None: not there)
    after: str | None
    diff: DataDiff | None
    pii: frozenset[str] = frozenset()


def compare(project: Project, state: StateStore, engine: Engine, first: str, second: str,
            model: str | None = None, *, columns: Sequence[str] | None = None,
            where: str | None = None, samples: int | None = None,
            key: Sequence[str] | None = None) -> list[ModelComparison]:
    """Data diffs of the models whose snapshots differ between `first` and `second` (or of one).
    `key`: the columns rows are matched by, instead of the model's unique key."""
    envs = []
    for name in (first, second):
        record = state.environment(name)
        if record is None:
            raise EnvError(f"there is no environment {name!r}; `sluice env list` shows them")
        envs.append(record.models)
    a, b = envs
    snapshots = state.snapshots(fingerprints=set(a.values()) | set(b.values()))
    names = [model] if model else sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
    if model and model not in a and model not in b:
        raise SluiceError(f"{model} is in neither {first} nor {second}")
    settings = project.config.diff
    caps = DiffCaps(max_rows=settings.max_rows, seconds=settings.seconds,
                    samples=settings.samples if samples is None else samples)
    out = []
    for name in names:
        before = snapshots.get(a[name]) if name in a else None
        after = snapshots.get(b[name]) if name in b else None
        pii = frozenset(pii_columns(project, name))
        present = after or before
        assert present is not None
        # Checked even when there is nothing to compare: hostile input is refused, always.
        known = engine.columns(table(present.physical_schema, present.physical_table))
        for what, wanted in (("column", columns), ("key column", key)):
            unknown = [c for c in wanted or () if c not in known]
            if unknown:
                raise SluiceError(f"{name} has no {what} {', '.join(unknown)} (it has: {', '.join(known)})")
        condition = (parse_predicate(where, known, project.config.dialect, project.allowlist)
                     if where else None)
        if before is None or after is None or before.physical == after.physical:
            out.append(ModelComparison(name, before.physical if before else None,
                                       after.physical if after else None, None, pii))
            continue
        after_table = table(after.physical_schema, after.physical_table)
        diff = diff_relations(engine, table(before.physical_schema, before.physical_table), after_table,
                              key=tuple(key) if key else unique_key(project, name), columns=columns,
                              where=condition, pii=pii,
                              caps=caps)
        out.append(ModelComparison(name, before.physical, after.physical, diff, pii))
    return out
