"""dbt projects: a repository with `dbt_project.yml`, compiled by dbt-core and mapped to a project.

dbt parses and compiles (Jinja, macros, packages, vars) in a child process without secrets;
Sluice takes the compiled SQL, configs and tests and plans, builds, tests and promotes them as it
does a plain project's. An optional `sluice.yml` beside `dbt_project.yml` adds Sluice's settings
(dialect, warehouse, environments, policies); its `name` defaults to the dbt project's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace
from functools import partial
from pathlib import Path

from runner.limits import DEFAULT_LIMITS, Limits
from runner.project.cache import ParseCache
from runner.project.config import CONFIG_FILE, ProjectConfig, config_from
from runner.project.dbt.compiler import DBT_PROJECT_FILE, DbtOptions, compile_project
from runner.project.dbt.mapping import project_from_manifest
from runner.project.nodes import DataTest, Project
from runner.project.yamlfile import YamlMapping, load_yaml
from runner.safety import Allowlist, Refusal, check_sql, load_allowlist, refuse_unsafe

__all__ = ["DBT_PROJECT_FILE", "DbtOptions", "check_compiled", "is_dbt_project", "load_dbt_project"]


def is_dbt_project(root: Path) -> bool:
    return (root / DBT_PROJECT_FILE).is_file()


def dbt_config(root: Path) -> ProjectConfig:
    """Sluice's settings for a dbt project: its sluice.yml when there is one, else the defaults."""
    dbt_project = load_yaml(root / DBT_PROJECT_FILE, DBT_PROJECT_FILE)
    name = dbt_project.get_str("name") or root.name
    if (root / CONFIG_FILE).is_file():
        data = load_yaml(root / CONFIG_FILE, CONFIG_FILE)
        if "name" not in data:
            data["name"] = name
        return config_from(data)
    return config_from(YamlMapping({"name": name}, {}, CONFIG_FILE, 1))


def load_dbt_project(root: Path, cache_dir: Path | None = None, options: DbtOptions | None = None,
                     limits: Limits = DEFAULT_LIMITS, sql_allowlist: Iterable[str] = ()) -> Project:
    """Compile the dbt project under `root` and map it; its compiled SQL then passes the same
    allowlist check as a plain project's (`sql_allowlist`: the server policy's additions)."""
    del limits  # dbt reads the files itself; the compiled SQL is what is checked
    config = dbt_config(root)
    manifest = compile_project(root, config.dialect, config.default_schema, options or DbtOptions(),
                               cache_dir)
    cache = ParseCache(cache_dir / "parse-cache.json" if cache_dir else None)
    allow = load_allowlist(config.dialect, sql_allowlist)
    project = replace(project_from_manifest(root, config, manifest, cache), allowlist=allow)
    try:
        check_compiled(project, allow, cache)
    finally:
        cache.save()
    return project


# dbt's `warn_if`/`error_if`: a comparison with a number, nothing else (they are pasted into SQL).
THRESHOLD = re.compile(r"\s*(=|==|!=|<>|<=|>=|<|>)\s*\d+(\.\d+)?\s*")


def check_compiled(project: Project, allow: Allowlist, cache: ParseCache | None = None) -> None:
    """Refuse compiled models and tests that are not one query over the project's own tables with
    allowlisted functions, and test thresholds that are not plain comparisons. With a `cache`, a
    model that passed against the same allowlist and names before is not checked again."""
    dialect = project.config.dialect
    cache = cache or ParseCache(None)
    context = ("compiled", dialect, allow.fingerprint, project.names.fingerprint)
    refusals: list[Refusal] = []
    for model in project.models.values():
        refusals += cache.verdict((*context, model.canonical), partial(
            check_sql, model.canonical, dialect, project.names, model.path, allowlist=allow))
    for test in project.tests:
        if test.sql:
            refusals += cache.verdict((*context, test.sql), partial(
                check_sql, test.sql, dialect, project.names, test.file, allowlist=allow))
        refusals += _threshold_refusals(test, dialect, project, allow)
    refuse_unsafe(refusals)


def _threshold_refusals(test: DataTest, dialect: str, project: Project,
                        allow: Allowlist) -> list[Refusal]:
    refusals = []
    for key, value in (("warn_if", test.warn_if), ("error_if", test.error_if)):
        if not THRESHOLD.fullmatch(value):
            refusals.append(Refusal(test.file, test.line, f"{key} {value!r} of test {test.name} is not "
                                    "a comparison with a number (e.g. \">10\")"))
    if test.fail_calc != "count(*)":
        # Checked as the select list it becomes, over a stand-in for the failing rows.
        probe = f"select {test.fail_calc} from (values (1)) as failing(x)"
        refusals += [Refusal(r.file, test.line, r.message.replace("the SQL", "fail_calc"))
                     for r in check_sql(probe, dialect, project.names, test.file, allowlist=allow)]
    return refusals

