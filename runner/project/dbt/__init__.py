"""dbt projects: a repository with `dbt_project.yml`, compiled by dbt-core and mapped to a project.

dbt parses and compiles (Jinja, macros, packages, vars) in a child process without secrets;
Sluice takes the compiled SQL, configs and tests and plans, builds, tests and promotes them as it
does a plain project's. An optional `sluice.yml` beside `dbt_project.yml` adds Sluice's settings
(dialect, warehouse, environments, policies); its `name` defaults to the dbt project's.
"""

from __future__ import annotations

from pathlib import Path

from runner.project.cache import ParseCache
from runner.project.config import CONFIG_FILE, ProjectConfig, config_from
from runner.project.dbt.compiler import DBT_PROJECT_FILE, DbtOptions, compile_project
from runner.project.dbt.mapping import project_from_manifest
from runner.project.nodes import Project
from runner.project.yamlfile import YamlMapping, load_yaml

__all__ = ["DBT_PROJECT_FILE", "DbtOptions", "is_dbt_project", "load_dbt_project"]


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


def load_dbt_project(root: Path, cache_dir: Path | None = None,
                     options: DbtOptions | None = None) -> Project:
    config = dbt_config(root)
    manifest = compile_project(root, config.dialect, config.default_schema, options or DbtOptions(),
                               cache_dir)
    cache = ParseCache(cache_dir / "parse-cache.json" if cache_dir else None)
    project = project_from_manifest(root, config, manifest, cache)
    cache.save()
    return project
