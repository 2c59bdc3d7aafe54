#!/usr/bin/env bash
# Create (idempotently) the competitor virtualenvs used by bench/run.py:
#   bench/.venvs/sqlmesh  -> sqlmesh (latest) with duckdb, and its dbt loader (sqlmesh[dbt] with
#                            dbt-duckdb, for bench/dbt_speed.py)
#   bench/.venvs/dbt      -> dbt-core 1.10.x + dbt-duckdb 1.10.x
# Never touches the project's own .venv. Re-running is a no-op once both work.
set -euo pipefail

BENCH_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENVS="${BENCH_DIR}/.venvs"
PYTHON="${PYTHON:-python3.11}"
# dbt-core >= 1.11 downloads parts of itself from outside the package index at
# install time, which fails on machines that only reach package registries.
DBT_CORE_SPEC="${DBT_CORE_SPEC:-dbt-core~=1.10.0}"
DBT_DUCKDB_SPEC="${DBT_DUCKDB_SPEC:-dbt-duckdb~=1.10.0}"
SQLMESH_SPEC="${SQLMESH_SPEC:-sqlmesh}"

if ! command -v "${PYTHON}" >/dev/null 2>&1; then
  PYTHON=python3
fi
mkdir -p "${VENVS}"

# Run pip, hiding the index-location warnings this machine's pip config prints.
pip_install() {
  local venv="$1"; shift
  "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check "$@" 2>&1 \
    | { grep -v '^WARNING: Location' || true; }
}

make_venv() {
  local dir="$1"
  if [[ ! -x "${dir}/bin/python" ]]; then
    echo ">> creating ${dir}"
    "${PYTHON}" -m venv "${dir}"
    pip_install "${dir}" --upgrade pip
  fi
}

# --- SQLMesh -----------------------------------------------------------------
SQLMESH_VENV="${VENVS}/sqlmesh"
if "${SQLMESH_VENV}/bin/sqlmesh" --version >/dev/null 2>&1 \
   && "${SQLMESH_VENV}/bin/python" -c "import duckdb, dbt.adapters.duckdb" >/dev/null 2>&1; then
  echo ">> sqlmesh ready: $("${SQLMESH_VENV}/bin/sqlmesh" --version)"
else
  make_venv "${SQLMESH_VENV}"
  echo ">> installing ${SQLMESH_SPEC}[dbt] + duckdb + ${DBT_DUCKDB_SPEC}"
  pip_install "${SQLMESH_VENV}" "${SQLMESH_SPEC}[dbt]" duckdb "${DBT_CORE_SPEC}" "${DBT_DUCKDB_SPEC}"
  echo ">> sqlmesh installed: $("${SQLMESH_VENV}/bin/sqlmesh" --version)"
fi

# --- dbt ---------------------------------------------------------------------
DBT_VENV="${VENVS}/dbt"
if "${DBT_VENV}/bin/dbt" --version >/dev/null 2>&1 \
   && "${DBT_VENV}/bin/python" -c "import dbt.adapters.duckdb" >/dev/null 2>&1; then
  echo ">> dbt ready: $("${DBT_VENV}/bin/python" -c 'import importlib.metadata as m; print("dbt-core", m.version("dbt-core"), "dbt-duckdb", m.version("dbt-duckdb"))')"
else
  make_venv "${DBT_VENV}"
  echo ">> installing ${DBT_CORE_SPEC} + ${DBT_DUCKDB_SPEC}"
  pip_install "${DBT_VENV}" "${DBT_CORE_SPEC}" "${DBT_DUCKDB_SPEC}"
  echo ">> dbt installed: $("${DBT_VENV}/bin/python" -c 'import importlib.metadata as m; print("dbt-core", m.version("dbt-core"), "dbt-duckdb", m.version("dbt-duckdb"))')"
fi
