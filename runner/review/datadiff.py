"""What a change does to the data: two relations compared by SQL inside the warehouse.

With a key, one full outer join on the key counts added, removed, changed and unchanged rows and
each column's changes in a single pass, checks the key and picks a few sample keys; without a key
the rows are compared as multisets (`EXCEPT ALL` both ways). Only counts and a handful of sample
rows (PII masked in SQL) ever leave the warehouse.

Decisions a reader of the report should know:

- Rows whose key has a NULL are left out of the comparison and counted in `null_keys_*`.
- Duplicate keys are counted as key values appearing more than once. Found cheaply: the join's
  row counts and the unmatched keys prove uniqueness, and only a side that fails the proof is
  grouped to count its duplicates. With duplicates, the row counts count join pairs.
- A column whose type changed is reported in `schema.retyped` and still compared: natively when
  both types are of one kind (numbers, text, dates and timestamps, times, booleans: DECIMAL(10,2)
  1.50 equals DECIMAL(10,3) 1.500), otherwise as text (INTEGER 7 equals VARCHAR '7').
- Above `caps.max_rows` rows on a side, only the keys (whole rows, without a key) whose hash falls
  in one of N buckets are compared, the same keys on both sides; `sampled` is then True,
  `sample_rate` is 1/N and every count except `rows_*` and `null_keys_*` is the sample's.
- After `caps.seconds` the running statement is interrupted; what was found until then is
  returned with `truncated=True`, counts not reached are 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from runner.engines.base import Cursor, Engine, TimeLimit
from runner.errors import SluiceError, WarehouseError
from runner.review.diffvalues import MASK, ColumnDiff, DataDiff, DiffCaps, Row, SchemaChange


@dataclass(frozen=True)
class _Column:
    """One column present on both sides, as compared."""

    name: str  # the after side's spelling
    before: str
    after: str
    before_type: str
    after_type: str
    as_text: bool  # types of different kinds: compared as text

    def value(self, side: str) -> exp.Expr:
        column = exp.column(self.before if side == "before" else self.after, quoted=True)
        return exp.cast(column, exp.DType.TEXT) if self.as_text else column

    def hashed(self, side: str, dialect: str) -> exp.Expr:
        """The value in a form whose hash is the same on both sides when the values are equal:
        a retyped value is hashed as the after side's type (DECIMAL(10,2) 1.50 as 1.500)."""
        if self.as_text or _normal_type(self.before_type) == _normal_type(self.after_type):
            return self.value(side)
        try:
            after_type = exp.DataType.build(self.after_type, dialect=dialect)
        except Exception:  # a type sqlglot cannot write: both sides hashed as text
            return exp.cast(self.value(side), exp.DType.TEXT)
        if side == "after":
            return self.value(side)
        return exp.TryCast(this=exp.column(self.before, quoted=True), to=after_type)


@dataclass
class _Found:
    """What the diff has learnt so far; what a truncated diff returns."""

    schema: SchemaChange = field(default_factory=SchemaChange)
    rows: tuple[int, int] = (0, 0)
    null_keys: tuple[int, int] = (0, 0)
    duplicates: tuple[int, int] = (0, 0)
    added: int = 0
    removed: int = 0
    changed: int = 0
    unchanged: int = 0
    columns: tuple[ColumnDiff, ...] = ()
    samples: tuple[tuple[Row | None, Row | None], ...] = ()
    buckets: int = 1


def diff_relations(engine: Engine, before: exp.Table, after: exp.Table, *, key: Sequence[str] = (),
                   columns: Sequence[str] | None = None, where: exp.Expr | None = None,
                   pii: Collection[str] = (), caps: DiffCaps | None = None) -> DataDiff:
    """Compare `before` with `after` in the warehouse, both read in one transaction.

    `key` names the columns identifying a row (none: whole rows compared as multisets); `columns`
    restricts the compared columns; `where` (a validated condition, see runner.review.predicate) filters
    both sides; values of `pii` columns are masked in the samples.
    """
    caps = caps or DiffCaps()
    started = time.perf_counter()
    found = _Found()
    limit = TimeLimit()
    finished = False
    try:
        with engine.transaction() as cursor, engine.time_limit(caps.seconds) as limit:
            _Diff(engine, cursor, before, after, key, columns, where, pii, caps, found).run()
        finished = True
    except WarehouseError:
        if not limit.expired:
            raise
    return DataDiff(
        before=_dotted(before), after=_dotted(after), key=tuple(key),
        rows_before=found.rows[0], rows_after=found.rows[1],
        added=found.added, removed=found.removed, changed=found.changed, unchanged=found.unchanged,
        columns=found.columns, schema=found.schema,
        duplicate_keys_before=found.duplicates[0], duplicate_keys_after=found.duplicates[1],
        null_keys_before=found.null_keys[0], null_keys_after=found.null_keys[1],
        samples=found.samples, sampled=found.buckets > 1, truncated=not finished,
        seconds=time.perf_counter() - started, sample_rate=1 / found.buckets,
    )


class _Diff:
    """One diff's queries, run in order of cost so that a time cap keeps the cheap answers.
    (Longer than most classes: the steps share the cursor, both sides and the result so far.)"""

    def __init__(self, engine: Engine, cursor: Cursor, before: exp.Table, after: exp.Table,
                 key: Sequence[str], columns: Sequence[str] | None, where: exp.Expr | None,
                 pii: Collection[str], caps: DiffCaps, found: _Found):
        if caps.max_rows is not None and caps.max_rows < 1:
            raise SluiceError(f"the data diff's row cap must be at least 1, not {caps.max_rows}")
        self.engine, self.cursor, self.caps, self.found = engine, cursor, caps, found
        self.tables = {"before": _bare(before), "after": _bare(after)}
        self.requested_key, self.requested_columns = list(key), columns
        self.where = where
        self.pii = {name.lower() for name in pii}

    def run(self) -> None:
        self._read_schema()
        self._count_rows()
        if self.key:
            self._diff_by_key()
        else:
            self._diff_rows()

    # -- schema ---------------------------------------------------------------------------------

    def _read_schema(self) -> None:
        dialect = self.engine.dialect
        self.types = {side: self.engine.column_types(table) for side, table in self.tables.items()}
        before = {name.lower(): (name, kind) for name, kind in self.types["before"]}
        after = {name.lower(): (name, kind) for name, kind in self.types["after"]}
        common = [n for n in after if n in before]
        self.found.schema = SchemaChange(
            added=tuple(after[n][0] for n in after if n not in before),
            removed=tuple(before[n][0] for n in before if n not in after),
            retyped=tuple((after[n][0], before[n][1], after[n][1]) for n in common
                          if _normal_type(before[n][1]) != _normal_type(after[n][1])),
        )
        shared = {n: _Column(after[n][0], before[n][0], after[n][0], before[n][1], after[n][1],
                             _kind(before[n][1], dialect) != _kind(after[n][1], dialect))
                  for n in common}
        self.key = [self._shared(shared, name, "key column") for name in self.requested_key]
        keyed = {c.name.lower() for c in self.key}
        if self.requested_columns is None:
            self.compared = [c for n, c in shared.items() if n not in keyed]
        else:
            picked = [self._shared(shared, name, "column") for name in self.requested_columns]
            self.compared = [c for c in dict.fromkeys(picked) if c.name.lower() not in keyed]
        if not self.key and not self.compared:
            raise SluiceError(f"{self._name('before')} and {self._name('after')} have no column in common "
                              f"to compare")
        if self.where is not None:
            for column in self.where.find_all(exp.Column):
                self._shared(shared, column.name, "column in the filter")
        self.shown = {side: self._shown_columns(side) for side in self.tables}

    def _shared(self, shared: dict[str, _Column], name: str, what: str) -> _Column:
        column = shared.get(name.lower())
        if column is not None:
            return column
        present = [side for side in self.tables if name.lower() in
                   {n.lower() for n, _ in self.types[side]}]
        where = f"only in {self._name(present[0])}" if present else "in neither relation"
        raise SluiceError(f"{what} `{name}` is {where}: it cannot be compared")

    def _shown_columns(self, side: str) -> list[str]:
        """The columns a sample row shows: the key, then the compared (or all) columns."""
        keys = [c.before if side == "before" else c.after for c in self.key]
        if self.requested_columns is None:
            rest = [name for name, _ in self.types[side] if name not in keys]
        else:
            rest = [c.before if side == "before" else c.after for c in self.compared]
        return keys + rest

    # -- counts ---------------------------------------------------------------------------------

    def _count_rows(self) -> None:
        """Rows per side after the filter, and rows with a NULL key: cheap, and known first."""
        parts = []
        for side in self.tables:
            counts: list[exp.Expr] = [exp.alias_(_count(), "n_rows")]
            if self.key:
                null_key = exp.or_(*[exp.column(c.before if side == "before" else c.after,
                                                quoted=True).is_(exp.null()) for c in self.key])
                counts.append(exp.alias_(_count(null_key), "n_null_keys"))
            parts.append(self._filtered(exp.select(*counts).from_(self.tables[side].copy()))
                         .subquery(side[0]))
        query = exp.select(exp.Star()).from_(parts[0]).join(parts[1], join_type="cross")
        row = self._one(query)
        half = len(row) // 2
        self.found.rows = (int(row[0]), int(row[half]))
        if self.key:
            self.found.null_keys = (int(row[1]), int(row[half + 1]))
        biggest = max(self.found.rows)
        hashing = self.engine.hash_values([exp.Literal.number(0)])
        if self.caps.max_rows is not None and biggest > self.caps.max_rows and hashing is not None:
            self.found.buckets = math.ceil(biggest / self.caps.max_rows)

    # -- the two sides, as compared -------------------------------------------------------------

    def _side(self, side: str) -> exp.Select:
        """SELECT the key as __k0.., the compared columns as __c0.. FROM side WHERE filter, sample."""
        selected = [exp.alias_(c.value(side), f"__k{i}") for i, c in enumerate(self.key)]
        selected += [exp.alias_(c.value(side), f"__c{i}") for i, c in enumerate(self.compared)]
        query = self._filtered(exp.select(*selected).from_(self.tables[side].copy()))
        if self.key:
            query = query.where(*[exp.column(c.before if side == "before" else c.after, quoted=True)
                                  .is_(exp.null()).not_() for c in self.key])
        if self.found.buckets > 1:
            hashed = self.key or self.compared
            hash_value = self.engine.hash_values([c.hashed(side, self.engine.dialect) for c in hashed])
            assert hash_value is not None
            bucket = exp.Mod(this=hash_value, expression=exp.Literal.number(self.found.buckets))
            query = query.where(bucket.eq(exp.Literal.number(0)))
        return query

    def _filtered(self, query: exp.Select) -> exp.Select:
        return query.where(self.where.copy()) if self.where is not None else query

    def _sizes(self) -> tuple[int, int]:
        """Rows of each side that enter the comparison."""
        if self.found.buckets == 1:
            rows, nulls = self.found.rows, self.found.null_keys
            return rows[0] - nulls[0], rows[1] - nulls[1]
        parts = [exp.select(exp.alias_(_count(), "n")).from_(self._side(side).subquery("s"))
                 .subquery(side[0]) for side in self.tables]
        row = self._one(exp.select(exp.Star()).from_(parts[0]).join(parts[1], join_type="cross"))
        return int(row[0]), int(row[1])

    # -- with a key -----------------------------------------------------------------------------

    def _diff_by_key(self) -> None:
        """The full outer join on the key: every count in one pass, then duplicates and samples."""
        sizes = self._sizes()
        b_keys = [exp.column(f"__k{i}", table="b") for i in range(len(self.key))]
        a_keys = [exp.column(f"__k{i}", table="a") for i in range(len(self.key))]
        removed = a_keys[0].is_(exp.null())
        added = b_keys[0].is_(exp.null())
        matched = exp.and_(removed.not_(), added.not_())
        differs = [exp.NullSafeNEQ(this=exp.column(f"__c{i}", table="b"),
                                   expression=exp.column(f"__c{i}", table="a"))
                   for i in range(len(self.compared))]
        changed = exp.and_(matched, exp.or_(*differs)) if differs else exp.false()
        counted: dict[str, exp.Expr] = {
            "joined_before": exp.func("count", b_keys[0]),
            "joined_after": exp.func("count", a_keys[0]),
            "added": _count(added),
            "removed": _count(removed),
            "matched": _count(matched),
            "changed": _count(changed),
        }
        counted.update({f"changed_{i}": _count(exp.and_(matched, d)) for i, d in enumerate(differs)})
        inner = [exp.alias_(e, name) for name, e in counted.items()]
        outer: list[exp.Expr] = [exp.column(name) for name in counted]
        lists = self.engine.list_types
        # The unmatched keys, to prove them unique: usually few, at most one side's rows.
        for kind, keys, condition in (("removed", b_keys, removed), ("added", a_keys, added)):
            if lists:  # listed in the join, their repeats counted over the lists
                inner.append(exp.alias_(_filter(exp.ArrayAgg(this=_tuple(keys)), condition), f"{kind}_keys"))
                outer.append(exp.alias_(_repeats(exp.column(f"{kind}_keys")), f"{kind}_repeats"))
            else:
                inner.append(exp.alias_(_repeats_counted(keys, condition), f"{kind}_repeats"))
                outer.append(exp.column(f"{kind}_repeats"))
        # The first keys of each kind: a deterministic sample.
        kinds: tuple[tuple[str, list[exp.Column], exp.Expr], ...] = (
            ("changed", b_keys, changed), ("added", a_keys, added), ("removed", b_keys, removed))
        if self.caps.samples > 0:
            for kind, keys, where in kinds:
                firsts = _first_keys(keys, where, self.caps.samples, lists)
                inner += [exp.alias_(e, f"sample_{kind}_{i}") for i, e in enumerate(firsts)]
                outer += [exp.column(f"sample_{kind}_{i}") for i in range(len(firsts))]
        join = (exp.select(*inner).from_(self._side("before").subquery("b"))
                .join(self._side("after").subquery("a"), join_type="full",
                      on=exp.and_(*[b.eq(a) for b, a in zip(b_keys, a_keys, strict=True)])))
        names, rows = self.cursor.fetch(self.engine.sql(exp.select(*outer).from_(join.subquery("d"))))
        row = dict(zip(names, rows[0], strict=True))

        n_matched, n_changed = int(row["matched"]), int(row["changed"])
        self.found.added, self.found.removed = int(row["added"]), int(row["removed"])
        self.found.changed, self.found.unchanged = n_changed, n_matched - n_changed
        per_column = [int(row[f"changed_{i}"]) for i in range(len(self.compared))]
        self.found.columns = tuple(ColumnDiff(c.name, n, n / n_matched if n_matched else 0.0)
                                   for c, n in zip(self.compared, per_column, strict=True))
        # A side's rows each appear once in the join unless their key matches several rows of the
        # other side, and the unmatched keys were checked for repeats: only a side failing that
        # proof of uniqueness is grouped to count its duplicate keys.
        before_suspect = int(row["joined_after"]) > sizes[1] or bool(row["removed_repeats"])
        after_suspect = int(row["joined_before"]) > sizes[0] or bool(row["added_repeats"])
        self.found.duplicates = (self._duplicates("before") if before_suspect else 0,
                                 self._duplicates("after") if after_suspect else 0)
        if self.caps.samples > 0:
            self._sample_rows(*(_listed_keys(row, f"sample_{kind}", len(self.key), lists)
                                for kind, _, _ in kinds))

    def _duplicates(self, side: str) -> int:
        keys = [exp.column(f"__k{i}") for i in range(len(self.key))]
        grouped = (exp.select(*keys).from_(self._side(side).subquery("s")).group_by(*keys)
                   .having(_count() > 1))
        return int(self._one(exp.select(_count()).from_(grouped.subquery("g")))[0])

    def _sample_rows(self, changed: list[Any], added: list[Any], removed: list[Any]) -> None:
        rows = {"before": self._rows_by_key("before", changed + removed),
                "after": self._rows_by_key("after", changed + added)}
        samples: list[tuple[Row | None, Row | None]] = []
        samples += [(rows["before"].get(k), rows["after"].get(k)) for k in changed]
        samples += [(None, rows["after"].get(k)) for k in added]
        samples += [(rows["before"].get(k), None) for k in removed]
        self.found.samples = tuple(samples)

    def _rows_by_key(self, side: str, keys: list[Any]) -> dict[Any, Row]:
        """A few whole rows fetched by key, PII masked in the query (a masked key is masked after)."""
        if not keys:
            return {}
        values = [c.value(side) for c in self.key]
        wanted = exp.or_(*[_key_matches(values, key if len(values) > 1 else (key,)) for key in keys])
        names = self.shown[side]
        selected = [exp.alias_(v.copy(), f"__k{i}") for i, v in enumerate(values)]
        selected += [exp.alias_(self._masked(exp.column(name, quoted=True), name), f"__v{i}")
                     for i, name in enumerate(names)]
        query = self._filtered(exp.select(*selected).from_(self.tables[side].copy())).where(wanted)
        _, fetched = self.cursor.fetch(self.engine.sql(query))
        found: dict[Any, Row] = {}
        for row in fetched:
            found_key = row[0] if len(values) == 1 else tuple(row[:len(values)])
            shown = dict(zip(names, row[len(values):], strict=True))
            found.setdefault(found_key, {n: (MASK if v is not None and n.lower() in self.pii else v)
                                         for n, v in shown.items()})
        return found

    def _masked(self, value: exp.Expr, name: str) -> exp.Expr:
        """`value`, or MASK when `name` is a PII column (NULL stays NULL: it reveals nothing)."""
        if name.lower() not in self.pii:
            return value
        return exp.case().when(value.is_(exp.null()), exp.null()).else_(exp.Literal.string(MASK))

    # -- without a key --------------------------------------------------------------------------

    def _diff_rows(self) -> None:
        sizes = self._sizes()
        counted = []
        for side, other in (("after", "before"), ("before", "after")):
            only = exp.except_(self._side(side), self._side(other), distinct=False).subquery("x")
            if self.caps.samples > 0:
                shown = [exp.alias_(self._masked(exp.column(f"__c{i}"), c.name), c.name)
                         for i, c in enumerate(self.compared)]
                query = (exp.select(exp.alias_(exp.Window(this=_count()), "__n"), *shown).from_(only)
                         .limit(self.caps.samples))
            else:
                query = exp.select(exp.alias_(_count(), "__n")).from_(only)
            _, rows = self.cursor.fetch(self.engine.sql(query))
            count = int(rows[0][0]) if rows else 0
            names = [c.name for c in self.compared]
            samples = [dict(zip(names, row[1:], strict=True)) for row in rows] if self.caps.samples else []
            counted.append((count, samples))
        (self.found.added, added), (self.found.removed, removed) = counted
        self.found.unchanged = sizes[0] - self.found.removed
        self.found.samples = tuple([(None, row) for row in added] + [(row, None) for row in removed])

    # -- helpers --------------------------------------------------------------------------------

    def _one(self, query: exp.Expr) -> tuple[Any, ...]:
        _, rows = self.cursor.fetch(self.engine.sql(query))
        return rows[0]

    def _name(self, side: str) -> str:
        return _dotted(self.tables[side])


def _bare(relation: exp.Table) -> exp.Table:
    bare = relation.copy()
    bare.set("alias", None)
    return bare


def _dotted(relation: exp.Table) -> str:
    return ".".join(part.name for part in relation.parts)


def _count(condition: exp.Expr | None = None) -> exp.Expr:
    counted = exp.func("count", exp.Star())
    return counted if condition is None else _filter(counted, condition)


def _filter(aggregate: exp.Expr, condition: exp.Expr) -> exp.Expr:
    return exp.Filter(this=aggregate, expression=exp.Where(this=condition.copy()))


def _tuple(values: list[exp.Column]) -> exp.Expr:
    return values[0].copy() if len(values) == 1 else exp.Tuple(expressions=[v.copy() for v in values])


def _repeats(keys: exp.Expr) -> exp.Expr:
    """How many entries of a list repeat an earlier one (NULL for no list)."""
    distinct = exp.ArraySize(this=exp.ArrayDistinct(this=keys.copy()))
    return exp.Sub(this=exp.ArraySize(this=keys), expression=distinct)


def _repeats_counted(keys: list[exp.Column], condition: exp.Expr) -> exp.Expr:
    """How many of the keys meeting `condition` repeat an earlier one, as one aggregate."""
    distinct = _filter(exp.func("count", exp.Distinct(expressions=[_tuple(keys)])), condition)
    return exp.Sub(this=_count(condition), expression=distinct)


def _first_keys(keys: list[exp.Column], condition: exp.Expr, n: int, lists: bool) -> list[exp.Expr]:
    """Aggregates giving the `n` smallest keys meeting `condition`: DuckDB's `min(key, n)`, or
    elsewhere one array per key column, each ordered by the whole key and cut to `n`."""
    first = exp.Literal.number(n)
    if lists:
        return [_filter(exp.func("min", _tuple(keys), first), condition)]
    order = [exp.Ordered(this=key.copy()) for key in keys]
    out: list[exp.Expr] = []
    for key in keys:
        listed = _filter(exp.ArrayAgg(this=exp.Order(this=key.copy(), expressions=[o.copy() for o in order])),
                         condition)
        out.append(exp.Bracket(this=exp.Paren(this=listed),
                               expressions=[exp.Slice(this=exp.Literal.number(1), expression=first.copy())]))
    return out


def _listed_keys(row: dict[str, Any], name: str, width: int, lists: bool) -> list[Any]:
    """The keys `_first_keys` found, each a value (one key column) or a tuple."""
    if lists:
        return list(row[f"{name}_0"] or [])
    columns = [list(row[f"{name}_{i}"] or []) for i in range(width)]
    return columns[0] if width == 1 else list(zip(*columns, strict=True))


def _key_matches(values: list[exp.Expr], key: Sequence[Any]) -> exp.Expr:
    return exp.and_(*[_equals(v, k) for v, k in zip(values, key, strict=True)])


def _equals(value: exp.Expr, literal: Any) -> exp.Expr:
    try:
        return value.copy().eq(exp.convert(literal))
    except ValueError:  # a type sqlglot cannot write as a literal (UUID, interval): compare as text
        return exp.cast(value.copy(), exp.DType.TEXT).eq(exp.Literal.string(str(literal)))


def _normal_type(text: str) -> str:
    return " ".join(text.upper().split())


def _kind(type_text: str, dialect: str) -> str:
    """The kind of values a type holds: types of one kind compare natively."""
    try:
        data_type = exp.DataType.build(type_text, dialect=dialect)
    except Exception:  # a type sqlglot does not know: only the same type compares natively
        return _normal_type(type_text)
    if data_type.is_type(*exp.DataType.NUMERIC_TYPES):
        return "number"
    if data_type.is_type(*exp.DataType.TEXT_TYPES):
        return "text"
    if data_type.is_type(exp.DType.TIME, exp.DType.TIMETZ):
        return "time"
    if data_type.is_type(*exp.DataType.TEMPORAL_TYPES):
        return "datetime"
    if data_type.is_type(exp.DType.BOOLEAN):
        return "boolean"
    return _normal_type(type_text)
