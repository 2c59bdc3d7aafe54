"""Parity of Sluice with `dbt build` on any dbt project (DuckDB): every relation equal.

    python bench/dbt_parity.py DBT_PROJECT_DIR [--no-bot]

The project is copied into a temporary git repository. dbt builds it (`dbt build`, its own
profile on a DuckDB file); Sluice builds it through the command line (`sluice plan prod`: plan,
build, test) and through the bot (a real worker and the web app on Redis, the fake GitLab's real
client, as the end-to-end tests run it). Then a branch changes the project (the last row of a
seed dropped, a model added), Sluice builds the branch's environment and promotes it (`sluice
promote`; the bot: merge request opened, merged), dbt builds the branch, and every relation of
dbt's is compared with Sluice's production view of it: columns, row count and an
order-independent checksum. Exits 1 on any difference or failed test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402

BIN = Path(sys.executable).parent
PARITY_MODEL = "sluice_parity_extra"


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} failed ({done.returncode}):\n"
                         f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def git(cwd: Path, *args: str) -> str:
    return run("git", "-c", "user.name=parity", "-c", "user.email=parity@example.com", *args,
               cwd=cwd).strip()


# -- dbt's side ------------------------------------------------------------------------------------


def dbt_build(project: Path, scratch: Path, name: str) -> tuple[Path, list[str]]:
    """`dbt build` into a DuckDB file of its own; the relations it made (`schema.alias`)."""
    out = scratch / f"dbt-{name}"
    out.mkdir()
    database = out / "dbt.duckdb"
    profile = _profile_name(project)
    (out / "profiles.yml").write_text(json.dumps({profile: {"target": "prod", "outputs": {"prod": {
        "type": "duckdb", "path": str(database), "schema": "main", "threads": 1}}}}))
    copy = out / "project"
    shutil.copytree(project, copy, ignore=shutil.ignore_patterns(".git", ".sluice", "target", "logs"))
    flags = ["--profiles-dir", str(out), "--project-dir", str(copy), "--target-path", str(out / "target"),
             "--log-path", str(out / "logs"), "--no-send-anonymous-usage-stats"]
    if (copy / "packages.yml").is_file() or (copy / "dependencies.yml").is_file():
        run(BIN / "dbt", "deps", *flags[:4], cwd=copy)
    run(BIN / "dbt", "build", *flags, cwd=copy)
    manifest = json.loads((out / "target" / "manifest.json").read_text())
    relations = sorted(f"{n['schema']}.{n['alias']}".lower() for n in manifest["nodes"].values()
                       if n["resource_type"] in ("model", "seed")
                       and n["config"].get("materialized") != "ephemeral")
    return database, relations


def _profile_name(project: Path) -> str:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load((project / "dbt_project.yml").read_text())
    return str(data.get("profile") or data.get("name"))


# -- comparing ---------------------------------------------------------------------------------------


def _value(value: Any) -> Any:
    if isinstance(value, float | decimal.Decimal):
        return round(float(value), 6)
    if isinstance(value, dt.date | dt.datetime | dt.time):
        return value.isoformat()
    return value


def fingerprint(database: Path, relation: str, schema_suffix: str = "") -> tuple[tuple[str, ...], int, str]:
    """Columns, row count and an order-independent checksum of one relation."""
    schema, name = relation.split(".", 1)
    connection = duckdb.connect(str(database), read_only=True)
    try:
        cursor = connection.execute(f'select * from "{schema}{schema_suffix}"."{name}"')
        columns = tuple(d[0].lower() for d in cursor.description)
        rows = sorted(json.dumps([_value(v) for v in row], default=str) for row in cursor.fetchall())
    finally:
        connection.close()
    return columns, len(rows), hashlib.sha256("\n".join(rows).encode()).hexdigest()[:16]


def compare(dbt_db: Path, sluice_db: Path, relations: list[str], label: str) -> list[str]:
    problems = []
    for relation in relations:
        try:
            theirs = fingerprint(dbt_db, relation)
            ours = fingerprint(sluice_db, relation)
        except duckdb.Error as exc:
            problems.append(f"{label}: {relation}: {' '.join(str(exc).split())[:200]}")
            continue
        status = "equal" if theirs == ours else "DIFFERENT"
        print(f"  {label}: {relation}: {ours[1]} rows, checksum {ours[2]} ({status})")
        if theirs != ours:
            problems.append(f"{label}: {relation}: dbt {theirs} != Sluice {ours}")
    return problems


# -- the branch change --------------------------------------------------------------------------------


def branch_change(work: Path, relations: list[str]) -> None:
    """Drop the last row of the first seed (its data changes, so does everything downstream) and
    add a model reading the last relation dbt built."""
    seeds = sorted((work / "seeds").glob("*.csv")) if (work / "seeds").is_dir() else []
    if seeds:
        lines = seeds[0].read_text().rstrip("\n").split("\n")
        if len(lines) > 2:
            seeds[0].write_text("\n".join(lines[:-1]) + "\n")
    model = relations[-1].split(".", 1)[1]
    # A view: a table without a unique key would (rightly) be held by the default policy.
    (work / "models" / f"{PARITY_MODEL}.sql").write_text(
        "{{ config(materialized='view') }}\n"
        f"select count(*) as n from {{{{ ref('{model}') }}}}\n")


# -- Sluice's side: the command line ---------------------------------------------------------------


def sluice_cli(work: Path, scratch: Path, relations: list[str]) -> tuple[Path, Path]:
    """Production built at main, then the branch built in its environment and promoted."""
    warehouse = scratch / "sluice-cli.duckdb"
    env = {"SLUICE_WAREHOUSE_URL": f"duckdb:///{warehouse}",
           "SLUICE_STATE_URL": f"sqlite:///{scratch / 'sluice-cli-state.db'}"}
    print("  sluice plan prod")
    out = run(BIN / "sluice", "plan", "prod", cwd=work, env=env)
    _check_tests(out, "sluice plan prod")
    snapshot = scratch / "sluice-cli-main.duckdb"
    shutil.copy(warehouse, snapshot)
    git(work, "checkout", "-q", "-b", "parity-change")
    branch_change(work, relations)
    git(work, "add", "-A")
    git(work, "commit", "-q", "-m", "parity: a branch change")
    print("  sluice plan mr_1, sluice promote mr_1 prod")
    out = run(BIN / "sluice", "plan", "mr_1", cwd=work, env=env)
    _check_tests(out, "sluice plan mr_1")
    run(BIN / "sluice", "promote", "mr_1", "prod", cwd=work, env=env)
    git(work, "checkout", "-q", "main")
    return snapshot, warehouse


def _check_tests(output: str, what: str) -> None:
    line = next((line for line in output.splitlines() if line.startswith("tests: ")), "tests: none ran")
    print(f"    {line}")
    if " 0 failed" not in line:
        raise SystemExit(f"{what}: {line}")


# -- Sluice's side: the bot --------------------------------------------------------------------------


def sluice_bot(project: Path, scratch: Path, relations: list[str]) -> tuple[Path, Path]:
    """The same through the bot: production bootstrapped, a merge request opened and merged."""
    from bot.forges.base import Role
    from tests.support.e2e import Bot, Forge, build_production, server_config
    from tests.support.fakeforge import FakeGitLab
    from tests.support.repos import Origin
    from tests.support.services import redis_client

    root = scratch / "bot"
    (root / "origin").mkdir(parents=True)
    redis_client("e2e").flushdb()
    with FakeGitLab() as fake:
        repo = "data/dbt"
        fake.set_role(repo, "alice", Role.DEVELOPER)
        fake.set_role(repo, "maria", Role.MAINTAINER)
        forge = Forge("gitlab", fake, repo)
        origin = Origin(root / "origin", source=project)  # apart from the bot's work_dir
        bot = Bot(server_config(root, forge, origin))
        bot.worker.start()
        try:
            print("  bot: production bootstrapped from main")
            build_production(bot, forge, origin)
            warehouse = root / "warehouse.duckdb"
            snapshot = scratch / "sluice-bot-main.duckdb"
            # The bootstrap closed its connection, and no event is queued: the file is quiet.
            shutil.copy(warehouse, snapshot)
            git(origin.work, "checkout", "-q", "-B", "parity-change", "main")
            branch_change(origin.work, relations)
            git(origin.work, "add", "-A")
            git(origin.work, "commit", "-q", "-m", "parity: a branch change")
            git(origin.work, "push", "-q", "-f", "origin", "parity-change")
            sha = git(origin.work, "rev-parse", "HEAD")
            print("  bot: merge request !1 opened")
            _send(bot, forge, forge.open(1, sha, "parity-change"))
            report = (forge.reports(1) or [""])[-1]
            status = forge.last_status(sha)
            print(f"    commit status: {status}")
            if status != "success":
                raise SystemExit(f"the bot's run of !1 ended {status}:\n{report[:3000]}")
            _send(bot, forge, forge.comment(1, "/approve\n/approve breaking", author="maria"))
            git(origin.work, "checkout", "-q", "main")
            git(origin.work, "merge", "-q", "--no-ff", "parity-change", "-m", "Merge parity-change")
            git(origin.work, "push", "-q", "origin", "main")
            fake.merge(repo, 1, git(origin.work, "rev-parse", "HEAD"))
            print("  bot: !1 merged (promotion)")
            _send(bot, forge, forge.hook(1, "closed"))
            promoted = [c for c in forge.comments(1) if "romot" in c]
            print(f"    {(promoted or ['no promotion comment'])[-1].splitlines()[0][:120]}")
        finally:
            bot.worker.stop()
        return snapshot, warehouse


def _send(bot: Any, forge: Any, delivery: tuple[dict[str, str], bytes]) -> None:
    from tests.support.e2e import path

    code = bot.deliver(delivery, path(forge))
    if code != 202:
        raise SystemExit(f"the webhook was answered {code}")
    bot.settle(timeout=900)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--no-bot", action="store_true", help="only the command line")
    args = parser.parse_args()
    source = args.project.resolve()
    if not (source / "dbt_project.yml").is_file():
        print(f"error: {source} has no dbt_project.yml", file=sys.stderr)
        return 2
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="sluice-parity-") as tmp:
        scratch = Path(tmp)
        work = scratch / "repo"
        shutil.copytree(source, work, ignore=shutil.ignore_patterns(
            ".git", ".sluice", "target", "logs", "dbt_packages", "*.duckdb"))
        git(work, "init", "-q", "-b", "main")
        # Sluice's laptop state and caches live in .sluice/, as a team's .gitignore would say.
        (work / ".git" / "info" / "exclude").write_text(".sluice/\ntarget/\nlogs/\ndbt_packages/\n")
        git(work, "add", "-A")
        git(work, "commit", "-q", "-m", "the dbt project")
        print(f"== dbt build of {source.name} (main)")
        dbt_main, relations = dbt_build(work, scratch, "main")
        print(f"  {len(relations)} relations")
        changed = scratch / "changed"
        shutil.copytree(work, changed, ignore=shutil.ignore_patterns(".git"))
        branch_change(changed, relations)
        print("== dbt build of the branch change")
        dbt_branch, branch_relations = dbt_build(changed, scratch, "branch")

        print("== Sluice, command line")
        cli_main, cli_branch = sluice_cli(work, scratch, relations)
        problems += compare(dbt_main, cli_main, relations, "cli main")
        problems += compare(dbt_branch, cli_branch, branch_relations, "cli branch, promoted")
        if not args.no_bot:
            print("== Sluice, the bot")
            bot_main, bot_branch = sluice_bot(source, scratch, relations)
            problems += compare(dbt_main, bot_main, relations, "bot main")
            problems += compare(dbt_branch, bot_branch, branch_relations, "bot branch, merged")
    if problems:
        print("\n".join(["== DIFFERENCES", *problems]))
        return 1
    print("== parity: every relation equal, every test passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
