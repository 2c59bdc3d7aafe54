"""How fast a no-op plan of a dbt project is: Sluice against `dbt build --select state:modified+
--defer` and SQLMesh's dbt loader, in one run.

    python bench/dbt_speed.py [--models 300] [--jaffle ../shared/fixtures/dbt/jaffle_shop_duckdb]

For each project (jaffle_shop_duckdb when the folder exists, and a generated one of --models
models, see bench/dbt_generate.py): production is built once by each tool, then, with nothing
changed, each is asked what to do:

- Sluice: `sluice plan prod --dry-run` (wall clock of the whole command), and the load + plan
  inside one process (what the bot's worker pays per event);
- dbt: `dbt build --select state:modified+ --defer --state PROD_ARTIFACTS` (it parses, partially);
- SQLMesh: `sqlmesh plan --no-prompts` on the dbt project (its dbt loader), when
  bench/.venvs/sqlmesh has SQLMesh with dbt (bench/setup_competitors.sh); else "not measured".

Then one model is edited and Sluice's plan is timed again (dbt's partial parse, then the cache).
Each figure is the best of --repeat runs, in seconds; the machine's other load counts in all.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.dbt_generate import generate  # noqa: E402

BIN = Path(sys.executable).parent
COMPETITORS = REPO / "bench" / ".venvs"


def timed(args: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> float:
    started = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    seconds = time.perf_counter() - started
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return seconds


def best(repeat: int, run: object) -> float:
    return min(run() for _ in range(repeat))  # type: ignore[operator]


def in_process(project: Path, env: dict[str, str]) -> float:
    """Load + plan inside one process, as the worker does per event (imports excluded)."""
    code = (
        "import time, sys\n"
        "from runner.project.loader import load_project\n"
        "from runner.pipeline import plan_environment\n"
        "from runner.settings import local_settings\n"
        "from runner.state.store import StateStore\n"
        f"root = {str(project)!r}\n"
        "settings = local_settings(__import__('pathlib').Path(root), state_url=sys.argv[1])\n"
        "state = StateStore(settings.state_url)\n"
        "t = time.perf_counter()\n"
        "plan = plan_environment(load_project(root, cache_dir=settings.cache_dir), state, 'prod')\n"
        "assert not plan.to_build, [n.name for n in plan.to_build]\n"
        "print(time.perf_counter() - t)\n")
    done = subprocess.run([sys.executable, "-c", code, env["SLUICE_STATE_URL"]], cwd=project,
                          capture_output=True, text=True, check=True, env={**os.environ, **env})
    return float(done.stdout.strip().splitlines()[-1])


def dbt_binary() -> Path:
    theirs = COMPETITORS / "dbt" / "bin" / "dbt"
    return theirs if theirs.exists() else BIN / "dbt"


def measure(name: str, source: Path, scratch: Path, repeat: int) -> dict[str, object]:
    work = scratch / name
    shutil.copytree(source, work, ignore=shutil.ignore_patterns(".git", ".sluice", "target", "logs"))
    # A cache folder of its own: the first plan compiles, the edit pays dbt's partial parse.
    env = {"SLUICE_WAREHOUSE_URL": f"duckdb:///{scratch / (name + '-sluice.duckdb')}",
           "SLUICE_STATE_URL": f"sqlite:///{scratch / (name + '-state.db')}",
           "XDG_CACHE_HOME": str(scratch / (name + "-cache"))}
    figures: dict[str, object] = {"project": name,
                                  "models": len(list((work / "models").rglob("*.sql")))}
    print(f"== {name}: {figures['models']} model files")
    figures["sluice_first_plan_build"] = round(timed([str(BIN / "sluice"), "plan", "prod"], work, env), 2)
    sluice_noop = best(repeat, lambda: timed([str(BIN / "sluice"), "plan", "prod", "--dry-run"], work, env))
    figures["sluice_noop_cli"] = round(sluice_noop, 2)
    figures["sluice_noop_in_process"] = round(best(repeat, lambda: in_process(work, env)), 3)

    # dbt: production built once, its artifacts kept as the state to compare with.
    dbt_dir = scratch / f"{name}-dbt"
    dbt_dir.mkdir()
    profile = _profile_name(work)
    (dbt_dir / "profiles.yml").write_text(json.dumps({profile: {"target": "prod", "outputs": {"prod": {
        "type": "duckdb", "path": str(dbt_dir / "dbt.duckdb"), "schema": "main", "threads": 2}}}}))
    dbt_copy = dbt_dir / "project"
    shutil.copytree(work, dbt_copy, ignore=shutil.ignore_patterns(".sluice", "dbt_packages"))
    dbt = str(dbt_binary())
    flags = ["--profiles-dir", str(dbt_dir), "--project-dir", str(dbt_copy)]
    if (dbt_copy / "packages.yml").exists():
        timed([dbt, "deps", *flags], dbt_copy)
    figures["dbt_full_build"] = round(timed([dbt, "build", *flags, "--target-path", str(dbt_dir / "prod")],
                                            dbt_copy), 2)
    figures["dbt_parse_full"] = round(timed([dbt, "parse", *flags, "--no-partial-parse",
                                             "--target-path", str(dbt_dir / "parse")], dbt_copy), 2)
    noop = [dbt, "build", *flags, "--select", "state:modified+", "--defer", "--state", str(dbt_dir / "prod"),
            "--target-path", str(dbt_dir / "ci")]
    figures["dbt_noop_state_modified_defer"] = round(best(repeat, lambda: timed(noop, dbt_copy)), 2)
    figures["sqlmesh_noop"] = sqlmesh_noop(work, scratch, name, repeat)

    # One model edited: dbt's partial parse, then Sluice's cache.
    model = sorted((work / "models").rglob("*.sql"))[-1]
    model.write_text(model.read_text().rstrip() + "\n-- edited\n")
    figures["sluice_plan_after_one_edit_cli"] = round(
        timed([str(BIN / "sluice"), "plan", "prod", "--dry-run"], work, env), 2)
    for key, value in figures.items():
        print(f"  {key}: {value}")
    return figures


def sqlmesh_noop(work: Path, scratch: Path, name: str, repeat: int) -> object:
    sqlmesh = COMPETITORS / "sqlmesh" / "bin" / "sqlmesh"
    python = COMPETITORS / "sqlmesh" / "bin" / "python"
    if not sqlmesh.exists() or subprocess.run([str(python), "-c", "import dbt.adapters.duckdb"],
                                              capture_output=True, check=False).returncode != 0:
        return "not measured (bench/.venvs/sqlmesh lacks SQLMesh with dbt-duckdb)"
    copy = scratch / f"{name}-sqlmesh"
    shutil.copytree(work, copy, ignore=shutil.ignore_patterns(".sluice", "target"))
    profile = _profile_name(copy)
    (copy / "profiles.yml").write_text(json.dumps({profile: {"target": "prod", "outputs": {"prod": {
        "type": "duckdb", "path": str(copy / "warehouse.duckdb"), "schema": "main", "threads": 2}}}}))
    _backfill_start(copy / "dbt_project.yml")
    (copy / "config.py").write_text(
        "from pathlib import Path\nfrom sqlmesh.dbt.loader import sqlmesh_config\n"
        "config = sqlmesh_config(Path(__file__).parent)\n")
    args = [str(sqlmesh), "plan", "--auto-apply", "--no-prompts"]
    timed(args, copy, check=True)
    return round(best(repeat, lambda: timed(args, copy)), 2)


def _backfill_start(project_file: Path) -> None:
    """SQLMesh's dbt loader refuses a project without a backfill start (`models: +start:`): give
    its copy one, as its documentation says to."""
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load(project_file.read_text())
    models = data.get("models") or {}
    models.setdefault("+start", "2000-01-01")
    data["models"] = models
    with project_file.open("w") as out:
        yaml.dump(data, out)


def _profile_name(project: Path) -> str:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load((project / "dbt_project.yml").read_text())
    return str(data.get("profile") or data.get("name"))


def main() -> None:
    # Every tool runs as installed: pip compiles the bytecode of what it installs (dbt's, SQLMesh's),
    # and Sluice's own modules (an editable checkout here) get theirs on first import, unless
    # the environment forbids writing it, which would make Sluice alone compile ~100 modules on
    # every start.
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=300)
    parser.add_argument("--jaffle", type=Path, default=REPO.parent / "shared" / "fixtures" / "dbt" /
                        "jaffle_shop_duckdb")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="sluice-dbt-speed-") as tmp:
        scratch = Path(tmp)
        if args.jaffle.is_dir():
            results.append(measure("jaffle_shop_duckdb", args.jaffle, scratch, args.repeat))
        generated = scratch / "generated-src"
        generate(generated, args.models)
        results.append(measure(f"generated_{args.models}", generated, scratch, args.repeat))
    for figures in results:
        sluice = figures["sluice_noop_cli"]
        dbt = figures["dbt_noop_state_modified_defer"]
        assert isinstance(sluice, float) and isinstance(dbt, float)
        print(f"{figures['project']}: no-op Sluice {sluice} s (in process "
              f"{figures['sluice_noop_in_process']} s) vs dbt state:modified+ --defer {dbt} s "
              f"({dbt / sluice:.1f}x); SQLMesh: {figures['sqlmesh_noop']}")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
