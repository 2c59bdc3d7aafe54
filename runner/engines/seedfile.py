"""A seed CSV file read as typed rows, its column types inferred as DuckDB's `read_csv` would, for
engines that load seeds themselves (PostgreSQL COPYs the rows in)."""

from __future__ import annotations

import csv
import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from runner.errors import WarehouseError

_BIGINT_MAX = 2**63 - 1


@dataclass(frozen=True)
class Seed:
    columns: tuple[str, ...]  # header names, lower-cased as unquoted names in models read them
    types: tuple[str, ...]  # PostgreSQL types, inferred as DuckDB's read_csv would
    rows: tuple[tuple[str | None, ...], ...]  # empty fields are NULL


_INTEGER = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_TIMESTAMPTZ = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)$")
_TIME = re.compile(r"^\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_BOOLEAN = {"true", "false"}


def read_seed(path: Path) -> Seed:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise WarehouseError(f"cannot read the seed {path.name}: {exc}") from None
    first = text.split("\n", 1)[0]
    delimiter = max([",", ";", "\t", "|"], key=lambda d: (first.count(d), d == ","))
    try:
        records = list(csv.reader(text.splitlines(), delimiter=delimiter))
    except csv.Error as exc:
        raise WarehouseError(f"cannot read the seed {path.name}: {exc}") from None
    records = [r for r in records if r]
    if not records:
        raise WarehouseError(f"the seed {path.name} is empty: it needs at least a header line")
    header, body = records[0], records[1:]
    columns = tuple((name.strip() or f"column{i}").lower() for i, name in enumerate(header))
    rows = []
    for number, record in enumerate(body, start=2):
        if len(record) != len(columns):
            raise WarehouseError(f"the seed {path.name} has {len(record)} fields on line {number}, "
                                 f"and {len(columns)} in its header")
        rows.append(tuple(value if value != "" else None for value in record))
    types = tuple(_infer_type([row[i] for row in rows if row[i] is not None]) for i in range(len(columns)))
    return Seed(columns, types, tuple(rows))


def _infer_type(values: list[str | None]) -> str:
    present = [v.strip() for v in values if v is not None]
    if not present:
        return "text"
    if all(v.lower() in _BOOLEAN for v in present):
        return "boolean"
    if all(_INTEGER.match(v) for v in present):
        return "bigint" if all(abs(int(v)) <= _BIGINT_MAX for v in present) else "numeric"
    if all(_FLOAT.match(v) for v in present):
        return "double precision"
    for pattern, kind in ((_DATE, "date"), (_TIMESTAMP, "timestamp"), (_TIMESTAMPTZ, "timestamptz"),
                          (_TIME, "time")):
        if all(pattern.match(v) for v in present) and all(_valid(v, kind) for v in present):
            return kind
    return "text"


def _valid(value: str, kind: str) -> bool:
    try:
        if kind == "date":
            dt.date.fromisoformat(value)
        elif kind == "time":
            dt.time.fromisoformat(value)
        else:
            dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return True
