"""Benchmark Sluice's data diff against reladiff's joindiff on two 10-million-row DuckDB tables.

Generates `prod.orders` and `mr.orders` in bench/.work/datadiff/warehouse.duckdb (about 1 % of the
rows changed across several columns, NULLs appearing and disappearing, a few rows added and
removed), then, on the same file and one tool at a time:

- Sluice: `runner.review.datadiff.diff_relations` with the key `id` and no caps (every row compared,
  with key validation, per-column counts and sample rows);
- reladiff: `diff_tables(..., algorithm="joindiff")` with the same key and columns, run in its own
  virtualenv (bench/.venvs/reladiff) as a subprocess; its time is the diff call inside that process;
- the floor: one bare full outer join with the same per-column counts, through duckdb directly.

Prints each time (median of the repeats), the ratio reladiff / Sluice, and whether both tools
found the same counts. Exit code 1 when they disagree or a tool fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import textwrap
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import duckdb

from runner.engines.duckdb import DuckDBEngine
from runner.naming import table
from runner.review.datadiff import DataDiff, DiffCaps, diff_relations

BENCH_DIR = Path(__file__).resolve().parent
WORK_DIR = BENCH_DIR / ".work" / "datadiff"
RELADIFF_VENV = BENCH_DIR / ".venvs" / "reladiff"
COLUMNS = ("customer_id", "amount", "status", "ordered_on", "score", "note")

# The data: deterministic arithmetic over range(), no RNG, so every run builds the same tables.
BEFORE_SQL = """
CREATE OR REPLACE TABLE prod.orders AS
SELECT i AS id,
       (i * 7919) % 100000 AS customer_id,
       CAST(((i * 104729) % 1000000) / 100.0 AS DECIMAL(12,2)) AS amount,
       ['new', 'paid', 'shipped', 'returned', 'cancelled'][i % 5 + 1] AS status,
       DATE '2020-01-01' + CAST(i % 2000 AS INTEGER) AS ordered_on,
       ((i * 31) % 1000) / 7.0 AS score,
       CASE WHEN i % 11 = 0 THEN NULL ELSE 'note ' || (i % 1000) END AS note
FROM range({rows}) r(i)
"""
# ~1 % of the rows change: amount (1 in 100), status (1 in 1000), note NULL -> value (1 in 1100)
# and value -> NULL (1 in 1000); 1 in 10007 rows is removed and {added} new rows are added.
AFTER_SQL = """
CREATE OR REPLACE TABLE mr.orders AS
SELECT id, customer_id,
       CASE WHEN id % 100 = 7 THEN CAST(amount + 1 AS DECIMAL(12,2)) ELSE amount END AS amount,
       CASE WHEN id % 1000 = 13 THEN 'refunded' ELSE status END AS status,
       ordered_on, score,
       CASE WHEN id % 1100 = 0 THEN 'added later' WHEN id % 1000 = 501 THEN NULL ELSE note END AS note
FROM prod.orders
WHERE id % 10007 <> 5
UNION ALL
SELECT {rows} + i, 1, 1.00, 'new', DATE '2024-01-01', 1.0, NULL FROM range({added}) r(i)
"""

RELADIFF_SCRIPT = textwrap.dedent("""
    import json, sys, time
    from reladiff import connect, connect_to_table, diff_tables
    path, columns = sys.argv[1], tuple(sys.argv[2].split(","))
    db = connect({"driver": "duckdb", "filepath": path})
    before = connect_to_table(db, "prod.orders", "id", extra_columns=columns)
    after = connect_to_table(db, "mr.orders", "id", extra_columns=columns)
    started = time.perf_counter()
    with diff_tables(before, after, algorithm="joindiff") as diff:
        stats = diff.get_stats_dict()
    seconds = time.perf_counter() - started
    db.close()
    print(json.dumps({"seconds": seconds, "stats": stats}, default=str))
""")


def generate(path: Path, rows: int, force: bool) -> None:
    if path.exists() and not force and existing_rows(path) == rows:
        print(f"tables: reusing {path} ({rows:,} rows)")
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    started = time.perf_counter()
    with duckdb.connect(str(path)) as connection:
        connection.execute("CREATE SCHEMA prod")
        connection.execute("CREATE SCHEMA mr")
        connection.execute(BEFORE_SQL.format(rows=rows))
        connection.execute(AFTER_SQL.format(rows=rows, added=max(1, rows // 10_000)))
        connection.execute("CHECKPOINT")
    print(f"tables: generated {path} ({rows:,} rows) in {time.perf_counter() - started:.1f} s")


def existing_rows(path: Path) -> int | None:
    """Rows of prod.orders when both tables are there (the generated file can be reused)."""
    with duckdb.connect(str(path), read_only=True) as connection:
        tables = connection.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'orders'").fetchone()
        if not tables or tables[0] != 2:
            return None
        counted = connection.execute("SELECT count(*) FROM prod.orders").fetchone()
    return int(counted[0]) if counted else None


def run_sluice(path: Path) -> DataDiff:
    engine = DuckDBEngine(path)
    try:
        return diff_relations(engine, table("prod", "orders"), table("mr", "orders"), key=["id"],
                              pii=["note"], caps=DiffCaps(max_rows=None, seconds=None))
    finally:
        engine.close()


def run_reladiff(path: Path, timeout: float) -> dict[str, Any]:
    python = RELADIFF_VENV / "bin" / "python"
    if not python.exists():
        raise RuntimeError(f"{python} is missing: run `python3.11 -m venv {RELADIFF_VENV} && "
                           f"{python} -m pip install reladiff duckdb`")
    done = subprocess.run([str(python), "-c", RELADIFF_SCRIPT, str(path), ",".join(COLUMNS)],
                          capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"reladiff failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def run_floor(path: Path) -> tuple[float, tuple[Any, ...]]:
    """The bare full outer join with per-column counts: what any keyed diff must at least do."""
    changed = [f"b.{c} IS DISTINCT FROM a.{c}" for c in COLUMNS]
    both = "b.id IS NOT NULL AND a.id IS NOT NULL"
    query = (f"SELECT count(*) FILTER (WHERE b.id IS NULL), count(*) FILTER (WHERE a.id IS NULL), "
             f"count(*) FILTER (WHERE {both} AND ({' OR '.join(changed)})), "
             + ", ".join(f"count(*) FILTER (WHERE {both} AND {c})" for c in changed)
             + " FROM prod.orders b FULL OUTER JOIN mr.orders a ON b.id = a.id")
    with duckdb.connect(str(path), read_only=True) as connection:
        started = time.perf_counter()
        row = connection.execute(query).fetchone()
        seconds = time.perf_counter() - started
    assert row is not None
    return seconds, row


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "duckdb": duckdb.__version__}
    for package in ("sqlglot",):
        found[package] = metadata.version(package)
    python = RELADIFF_VENV / "bin" / "python"
    if python.exists():
        probe = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; "
             "print(m.version('reladiff'), m.version('duckdb'))"],
            capture_output=True, text=True, check=False)
        if probe.returncode == 0:
            reladiff, its_duckdb = probe.stdout.split()
            found["reladiff"] = f"{reladiff} (duckdb {its_duckdb})"
    return found


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows per table (default 10,000,000)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each tool; medians are reported")
    parser.add_argument("--regenerate", action="store_true", help="rebuild the tables even if present")
    parser.add_argument("--no-reladiff", action="store_true", help="time Sluice and the floor only")
    parser.add_argument("--timeout", type=float, default=1800, help="per reladiff run, seconds")
    parser.add_argument("--json", type=Path, help="also write every sample as JSON")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    path = WORK_DIR / "warehouse.duckdb"
    print("machine:", f"{platform.machine()}, {platform.system()} {platform.release()}")
    print("versions:", ", ".join(f"{k}={v}" for k, v in versions().items()))
    generate(path, args.rows, args.regenerate)

    samples: dict[str, list[float]] = {"sluice": [], "reladiff": [], "floor": []}
    sluice: DataDiff | None = None
    reladiff: dict[str, Any] | None = None
    floor_row: tuple[Any, ...] = ()
    errors: list[str] = []
    for repeat in range(1, args.repeats + 1):
        # One tool at a time: DuckDB lets one process hold the file.
        sluice = run_sluice(path)
        samples["sluice"].append(sluice.seconds)
        seconds, floor_row = run_floor(path)
        samples["floor"].append(seconds)
        line = f"run {repeat}: sluice {sluice.seconds:6.2f} s   floor {seconds:6.2f} s"
        if not args.no_reladiff and not errors:
            try:
                reladiff = run_reladiff(path, args.timeout)
                samples["reladiff"].append(float(reladiff["seconds"]))
                line += f"   reladiff joindiff {reladiff['seconds']:6.2f} s"
            except (RuntimeError, subprocess.TimeoutExpired) as exc:
                errors.append(f"reladiff: {exc}")
        print(line, flush=True)

    assert sluice is not None
    print(f"\nSluice: {sluice.rows_before:,} -> {sluice.rows_after:,} rows; added {sluice.added:,}, "
          f"removed {sluice.removed:,}, changed {sluice.changed:,}, unchanged {sluice.unchanged:,}; "
          f"duplicate keys {sluice.duplicate_keys_before}/{sluice.duplicate_keys_after}, "
          f"NULL keys {sluice.null_keys_before}/{sluice.null_keys_after}; {len(sluice.samples)} sample rows")
    print("  per column: " + ", ".join(f"{c.name} {c.changed:,} ({c.share:.3%})" for c in sluice.columns))

    ours = (sluice.rows_before, sluice.rows_after, sluice.added, sluice.removed, sluice.changed,
            sluice.unchanged)
    same_as_floor = (floor_row[:3] == (sluice.added, sluice.removed, sluice.changed)
                     and tuple(floor_row[3:]) == tuple(c.changed for c in sluice.columns))
    print("  floor query agrees on added/removed/changed and per-column counts: "
          f"{'yes' if same_as_floor else 'NO'}")
    if not same_as_floor:
        errors.append(f"the floor query found {floor_row}")

    sluice_median = statistics.median(samples["sluice"])
    floor_median = statistics.median(samples["floor"])
    print(f"\n{'':28s} {'median':>8s} {'min':>8s}")
    print(f"{'Sluice diff_relations':28s} {sluice_median:7.2f}s {min(samples['sluice']):7.2f}s")
    print(f"{'floor (bare outer join)':28s} {floor_median:7.2f}s {min(samples['floor']):7.2f}s")
    verdict = None
    if samples["reladiff"] and reladiff is not None:
        stats = reladiff["stats"]
        theirs = (stats["rows_A"], stats["rows_B"], stats["exclusive_B"], stats["exclusive_A"],
                  stats["updated"], stats["unchanged"])
        reladiff_median = statistics.median(samples["reladiff"])
        ratio = reladiff_median / sluice_median
        print(f"{'reladiff joindiff':28s} {reladiff_median:7.2f}s {min(samples['reladiff']):7.2f}s")
        print(f"\nreladiff / Sluice: {ratio:.1f}x   Sluice / floor: {sluice_median / floor_median:.2f}x")
        agree = ours == theirs
        print("same counts (rows before/after, added, removed, changed, unchanged): "
              f"{'yes' if agree else 'NO'} {ours if agree else f'Sluice {ours} reladiff {theirs}'}")
        if not agree:
            errors.append("Sluice and reladiff disagree")
        verdict = ratio >= 3.0
        print(f"target reladiff / Sluice >= 3x: {'PASS' if verdict else 'FAIL'} ({ratio:.1f}x)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": args.rows, "versions": versions(), "samples": samples,
                                         "sluice": list(ours), "reladiff": reladiff, "errors": errors},
                                        indent=2, default=str))
        print(f"\nJSON written to {args.json}")
    for error in errors:
        print(f"\nERROR {error}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
