"""What a data diff found, as plain values: counts, per-column changes, schema changes and a few
sample rows (see `datadiff` for how they are computed and what each count means)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

MASK = "***"


@dataclass(frozen=True)
class DiffCaps:
    max_rows: int | None = 10_000_000  # a side with more rows is compared on a deterministic sample
    seconds: float | None = 60.0  # time after which the diff stops and returns what it found
    samples: int = 5  # sample rows per kind of difference (changed, added, removed)


@dataclass(frozen=True)
class ColumnDiff:
    name: str
    changed: int
    share: float  # share of matched rows whose value changed (NULL vs NULL is equal)


@dataclass(frozen=True)
class SchemaChange:
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    retyped: tuple[tuple[str, str, str], ...] = ()  # (column, before type, after type)

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed or self.retyped)


Row = dict[str, Any]


@dataclass(frozen=True)
class DataDiff:
    before: str
    after: str
    key: tuple[str, ...]  # () = no key: rows compared as multisets
    rows_before: int
    rows_after: int
    added: int
    removed: int
    changed: int
    unchanged: int
    columns: tuple[ColumnDiff, ...]
    schema: SchemaChange
    duplicate_keys_before: int  # key values appearing more than once
    duplicate_keys_after: int
    null_keys_before: int  # rows with a NULL in a key column (left out of the comparison)
    null_keys_after: int
    samples: tuple[tuple[Row | None, Row | None], ...]  # (before, after): changed, then added, removed
    sampled: bool
    truncated: bool
    seconds: float
    sample_rate: float = 1.0  # share of the keys compared (below 1 when sampled)

    @property
    def key_problems(self) -> bool:
        return bool(self.duplicate_keys_before or self.duplicate_keys_after
                    or self.null_keys_before or self.null_keys_after)

    @property
    def identical(self) -> bool:
        return not (self.added or self.removed or self.changed or self.schema.changed or self.truncated)
