"""Generate a dbt project of N models (default 300) with macros and a local package, for speed
benchmarks: `python bench/dbt_generate.py OUT_DIR [--models 300]`.

The shape follows the projects counted in issue 13: seeds, staging models (`stg_app__*` names),
CTE chains over one to three parents, project macros and a local package's macros in SQL,
`{% for %}` loops and `var()`, a custom schema for marts, and generic tests (built-in and the
package's own) on every model's key.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

SEEDS = 4
SEED_ROWS = 200


def generate(out: Path, models: int, seed: int = 13) -> None:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    (out / "dbt_project.yml").write_text(
        "name: bench\nversion: '1.0'\nconfig-version: 2\nprofile: bench\n"
        "model-paths: [models]\nseed-paths: [seeds]\nmacro-paths: [macros]\n"
        "vars:\n  multiplier: 3\n  buckets: [1, 2, 3]\n"
        "models:\n  bench:\n    staging:\n      +materialized: view\n"
        "    marts:\n      +materialized: table\n      +schema: mart\n")
    (out / "packages.yml").write_text("packages:\n  - local: packages/bench_utils\n")
    package = out / "packages" / "bench_utils"
    (package / "macros").mkdir(parents=True, exist_ok=True)
    (package / "tests" / "generic").mkdir(parents=True, exist_ok=True)
    (package / "dbt_project.yml").write_text(
        "name: bench_utils\nversion: '1.0'\nconfig-version: 2\nmacro-paths: [macros]\n")
    (package / "macros" / "safe_divide.sql").write_text(
        "{% macro safe_divide(a, b) -%}\n"
        "    case when {{ b }} = 0 then null else {{ a }} * 1.0 / {{ b }} end\n"
        "{%- endmacro %}\n")
    (package / "macros" / "bucket.sql").write_text(
        "{% macro bucket(column) -%}\n    case\n    {%- for b in var('buckets') %}\n"
        "        when {{ column }} % {{ var('buckets') | length }} = {{ loop.index0 }} then {{ b }}\n"
        "    {%- endfor %}\n    end\n{%- endmacro %}\n")
    (package / "tests" / "generic" / "non_negative.sql").write_text(
        "{% test non_negative(model, column_name) %}\n"
        "select {{ column_name }} from {{ model }} where {{ column_name }} < 0\n{% endtest %}\n")
    (out / "macros").mkdir(exist_ok=True)
    (out / "macros" / "scaled.sql").write_text(
        "{% macro scaled(column) -%}\n    ({{ column }} * {{ var('multiplier') }})\n{%- endmacro %}\n")
    (out / "macros" / "label.sql").write_text(
        "{% macro label(column) -%}\n    'item_' || cast({{ column }} as varchar)\n{%- endmacro %}\n")

    seeds = out / "seeds"
    seeds.mkdir(exist_ok=True)
    for s in range(SEEDS):
        lines = ["id,amount,category"] + [f"{i},{rng.randint(0, 1000)},{rng.choice('abcde')}"
                                          for i in range(1, SEED_ROWS + 1)]
        (seeds / f"raw_source_{s}.csv").write_text("\n".join(lines) + "\n")

    staging_count = max(models // 10, 1)
    mart_count = max(models // 3, 1)
    middle_count = models - staging_count - mart_count
    layers = [("staging", "stg_app__", staging_count), ("intermediate", "int_", middle_count),
              ("marts", "fct_", mart_count)]
    made: list[str] = []
    tests: dict[str, list[str]] = {}
    for folder, prefix, count in layers:
        directory = out / "models" / folder
        directory.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            name = f"{prefix}{i:03d}"
            if folder == "staging":
                sql = _staging(i % SEEDS)
            else:
                parents = rng.sample(made[-60:], k=min(len(made[-60:]), rng.randint(1, 3)))
                sql = _derived(parents)
            (directory / f"{name}.sql").write_text(sql)
            tests.setdefault(folder, []).append(name)
            made.append(name)
        entries = "\n".join(
            f"  - name: {n}\n    columns:\n      - name: id\n        data_tests: [not_null]\n"
            f"      - name: amount\n        data_tests: [bench_utils.non_negative]" for n in tests[folder])
        (directory / "schema.yml").write_text(f"version: 2\nmodels:\n{entries}\n")


def _staging(seed: int) -> str:
    return (f"with source as (\n    select * from {{{{ ref('raw_source_{seed}') }}}}\n),\n"
            "renamed as (\n    select id, amount, category, {{ bench_utils.bucket('id') }} as bucket\n"
            "    from source\n)\n"
            "select * from renamed\n")


def _derived(parents: list[str]) -> str:
    ctes = ",\n".join(f"p{i} as (\n    select id, amount, category, bucket from {{{{ ref('{p}') }}}}\n)"
                      for i, p in enumerate(parents))
    joins = "\n".join(f"left join p{i} on p{i}.id = p0.id" for i in range(1, len(parents)))
    total = " + ".join(f"coalesce(p{i}.amount, 0)" for i in range(len(parents)))
    return (f"with {ctes},\njoined as (\n    select p0.id, p0.category, p0.bucket,\n"
            f"        {total} as amount\n    from p0\n{joins}\n),\n"
            "final as (\n    select id, category, bucket, amount,\n"
            "        {{ scaled('amount') }} as scaled_amount,\n"
            "        {{ bench_utils.safe_divide('amount', 'bucket') }} as per_bucket,\n"
            "        {{ label('id') }} as label\n    from joined\n)\nselect * from final\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--models", type=int, default=300)
    args = parser.parse_args()
    generate(args.out, args.models)
    print(f"generated {args.models} models in {args.out}")


if __name__ == "__main__":
    main()
