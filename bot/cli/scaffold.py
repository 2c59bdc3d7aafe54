"""`sluice init`: a commented sluice.yml and an example model, so a new project starts from
something that runs."""

from __future__ import annotations

import re
from pathlib import Path

from runner.errors import SluiceError
from runner.project.config import CONFIG_FILE

SLUICE_YML = """\
# Sluice project configuration. Every key is optional except `name`.
name: {name}

# SQL dialect the models are written in: duckdb or postgres.
dialect: duckdb

# The warehouse connection this project uses. The server defines connections (credentials never
# live in the repository); on a laptop every name means the DuckDB file under .sluice/.
warehouse: default

paths:
  models: models   # models/<schema>/<name>.sql, one SELECT each; the folder is the schema
  seeds: seeds     # seeds/<name>.csv, loaded as tables
  tests: tests     # tests/<name>.sql, queries returning failing rows

seeds:
  schema: raw      # seeds/customers.csv becomes raw.customers

# Environments with settings. `prod` is production and protected: its views only move when every
# build and test passed. Any other name (mr_42, dev, staging) is created on first use.
environments:
  prod:
    protected: true
  staging: {{}}

build:
  threads: 4       # models that do not depend on each other build at the same time

tests:
  changed_only: true   # run the tests of models whose data changed; `--all-tests` runs them all
"""

EXAMPLE_SEED = """\
id,name,signed_up_at
1,Ada,2026-01-04
2,Grace,2026-02-11
3,Linus,2026-03-20
"""

EXAMPLE_MODEL = """\
-- A model is one SELECT. Read seeds, sources and other models by schema.name.
select
    id as user_id,
    name,
    cast(signed_up_at as date) as signed_up_on
from raw.users
"""

EXAMPLE_YAML = """\
models:
  - name: stg_users
    description: One row per user.
    columns:
      - name: user_id
        tests: [unique, not_null]
# Tables the project reads but does not build, e.g. loaded by your ingestion tool:
# sources:
#   - name: app
#     tables:
#       - name: events
"""


def write_scaffold(directory: Path, name: str | None = None) -> list[Path]:
    directory = directory.resolve()
    if (directory / CONFIG_FILE).exists():
        raise SluiceError(f"{directory / CONFIG_FILE} already exists; nothing written")
    project = (name or re.sub(r"[^a-z0-9_]+", "_", directory.name.lower())).strip("_") or "project"
    files = {
        CONFIG_FILE: SLUICE_YML.format(name=project),
        "seeds/users.csv": EXAMPLE_SEED,
        "models/staging/stg_users.sql": EXAMPLE_MODEL,
        "models/staging/schema.yml": EXAMPLE_YAML,
        ".gitignore": ".sluice/\n",
    }
    written = []
    for rel, text in files.items():
        path = directory / rel
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    (directory / "tests").mkdir(exist_ok=True)
    return written


def start_repository(directory: Path) -> str:
    """`git init -b main` and a first commit of the scaffold; what happened, in one line."""
    import subprocess

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=directory, capture_output=True, text=True, check=False)

    try:
        if not (directory / ".git").exists() and git("init", "-q", "-b", "main").returncode != 0:
            raise SluiceError(f"git init failed in {directory}")
    except FileNotFoundError:
        raise SluiceError("git is not installed: install it, or leave out --git") from None
    git("add", "-A")
    committed = git("commit", "-q", "-m", "Start a Sluice project")
    if committed.returncode != 0:
        detail = (committed.stderr.strip().splitlines() or ["no details"])[-1]
        return (f"made a git repository on branch main; the first commit failed ({detail}): "
                "commit the files yourself")
    return "made a git repository on branch main and committed the project"
