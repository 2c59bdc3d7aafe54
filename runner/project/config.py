"""The project's `sluice.yml`: name, SQL dialect, warehouse connection, paths and environments."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath

from runner.engines import DEFAULT_DIALECT, DIALECTS
from runner.errors import ProjectError
from runner.limits import DEFAULT_LIMITS, Limits
from runner.naming import PRODUCTION, is_environment_name
from runner.project.files import inside
from runner.project.yamlfile import YamlMapping, load_yaml, parse_yaml

CONFIG_FILE = "sluice.yml"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class EnvironmentConfig:
    name: str
    protected: bool = False


@dataclass(frozen=True)
class DiffSettings:
    """How far the report's data diff may go (`diff:` in sluice.yml)."""

    max_rows: int = 10_000_000  # per side; beyond it a deterministic sample is compared
    seconds: float = 60.0  # per model
    samples: int = 5  # changed rows shown per model
    max_models: int = 20  # models diffed per report
    baseline: str = "prod"  # "rebuild": also build production's version from today's sources


@dataclass(frozen=True)
class ProjectConfig:
    name: str
    dialect: str = DEFAULT_DIALECT
    warehouse: str = "default"
    models_path: str = "models"
    seeds_path: str = "seeds"
    tests_path: str = "tests"
    seed_schema: str = "raw"
    default_schema: str = "main"
    threads: int = 4
    test_changed_only: bool = True
    diff: DiffSettings = field(default_factory=lambda: DiffSettings())
    policies: YamlMapping | None = None  # the `policies:` section as written (read by `policies`)
    environments: dict[str, EnvironmentConfig] = field(default_factory=dict)

    def environment(self, name: str) -> EnvironmentConfig:
        return self.environments.get(name, EnvironmentConfig(name, protected=name == PRODUCTION))


def check_identifier(value: str, what: str, where: YamlMapping | None = None, key: str | None = None,
                     file: str | None = None, table: bool = False) -> str:
    """Schema, model and seed names become SQL identifiers: keep them plain. A schema name is free
    of `__`, which separates it from an environment's suffix (`marts__mr_42`); a `table` name may
    hold it (dbt's `stg_app__users`): its physical name only appends `__` and a fixed-length hex
    fingerprint, which never holds an underscore, so it still reads one way."""
    if not IDENTIFIER.match(value) or (not table and "__" in value) or value.startswith("sluice"):
        reserved = "a 'sluice' prefix is" if table else "double underscores and a 'sluice' prefix are"
        message = (f"{what} {value!r} is not a valid name: use lower-case letters, digits and "
                   f"underscores, starting with a letter ({reserved} reserved)")
        if where is not None:
            raise where.error(key, message)
        raise ProjectError(message, file=file)
    return value


def load_project_config(root: Path, limits: Limits = DEFAULT_LIMITS) -> ProjectConfig:
    path = root / CONFIG_FILE
    if not path.is_file():
        raise ProjectError(
            f"no {CONFIG_FILE} here; run `sluice init {root}` to start a project", file=path
        )
    return config_from(load_yaml(inside(root.resolve(), path, CONFIG_FILE), CONFIG_FILE, limits))


def parse_project_config(text: str, limits: Limits = DEFAULT_LIMITS) -> ProjectConfig:
    """A sluice.yml read from somewhere else than a checkout (e.g. a branch's head in git)."""
    return config_from(parse_yaml(text, CONFIG_FILE, limits))


def _project_path(paths: YamlMapping, key: str, default: str) -> str:
    """A folder named in `paths:`, relative to the repository's root and staying inside it."""
    value = paths.get_str(key) or default
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or value.startswith("~"):
        raise paths.error(key, f"paths.{key} must be a folder inside the repository, relative to "
                          f"sluice.yml, not the absolute path {value!r}")
    if ".." in posix.parts or ".." in windows.parts:
        raise paths.error(key, f"paths.{key} must stay inside the repository: {value!r} goes up with "
                          "'..'")
    if "\0" in value:
        raise paths.error(key, f"paths.{key} holds a NUL character")
    return value


def config_from(data: YamlMapping) -> ProjectConfig:
    data.check_keys(
        {"name", "dialect", "warehouse", "paths", "seeds", "default_schema", "environments",
         "build", "tests", "policies", "diff"},
        CONFIG_FILE,
    )
    name = data.get_str("name")
    if not name:
        raise data.error(None, "'name' is required: the project's name")
    dialect = (data.get_str("dialect") or DEFAULT_DIALECT).lower()
    if dialect not in DIALECTS:
        raise data.error("dialect", f"dialect {dialect!r} is not supported; use one of: "
                         f"{', '.join(sorted(DIALECTS))}")
    paths = data.get_mapping("paths")
    paths.check_keys({"models", "seeds", "tests"}, "'paths'")
    seeds = data.get_mapping("seeds")
    seeds.check_keys({"schema"}, "'seeds'")
    build = data.get_mapping("build")
    build.check_keys({"threads"}, "'build'")
    threads = build.get("threads", 4)
    if not isinstance(threads, int) or isinstance(threads, bool) or not 1 <= threads <= 64:
        raise build.error("threads", "'threads' must be a whole number from 1 to 64")
    tests = data.get_mapping("tests")
    tests.check_keys({"changed_only"}, "'tests'")
    changed_only = tests.get("changed_only", True)
    if not isinstance(changed_only, bool):
        raise tests.error("changed_only", "'changed_only' must be true or false")

    environments: dict[str, EnvironmentConfig] = {}
    envs = data.get_mapping("environments")
    for env_name, env_data in envs.items():
        if not is_environment_name(env_name):
            raise envs.error(env_name, f"environment name {env_name!r} is not valid")
        if env_data is None:
            env_data = YamlMapping({}, {}, CONFIG_FILE, envs.line_of(env_name))
        if not isinstance(env_data, YamlMapping):
            raise envs.error(env_name, f"environment {env_name!r} must be a mapping")
        env_data.check_keys({"protected"}, f"environment {env_name!r}")
        protected = env_data.get("protected", env_name == PRODUCTION)
        if not isinstance(protected, bool):
            raise env_data.error("protected", "'protected' must be true or false")
        environments[env_name] = EnvironmentConfig(env_name, protected)

    diff = _diff_settings(data.get_mapping("diff"))
    seed_schema = check_identifier(seeds.get_str("schema") or "raw", "seed schema", seeds, "schema")
    default_schema = data.get_str("default_schema") or "main"
    check_identifier(default_schema, "default schema", data, "default_schema")
    return ProjectConfig(
        name=name,
        dialect=dialect,
        warehouse=data.get_str("warehouse") or "default",
        models_path=_project_path(paths, "models", "models"),
        seeds_path=_project_path(paths, "seeds", "seeds"),
        tests_path=_project_path(paths, "tests", "tests"),
        seed_schema=seed_schema,
        default_schema=default_schema,
        threads=threads,
        test_changed_only=changed_only,
        diff=diff,
        policies=data.get_mapping("policies") if "policies" in data else None,
        environments=environments,
    )


def _diff_settings(section: YamlMapping) -> DiffSettings:
    section.check_keys({"max_rows", "seconds", "samples", "max_models", "baseline"}, "'diff'")
    values: dict[str, object] = {}
    for key, kind, low, high in (("max_rows", int, 1, 10**12), ("seconds", float, 0.1, 86400.0),
                                 ("samples", int, 0, 100), ("max_models", int, 0, 1000)):
        if key in section:
            value = section[key]
            if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
                raise section.error(key, f"diff.{key} must be a number from {low} to {high}")
            values[key] = kind(value)
    baseline = section.get_str("baseline") or "prod"
    if baseline not in ("prod", "rebuild"):
        raise section.error("baseline", "diff.baseline must be 'prod' or 'rebuild'")
    return DiffSettings(baseline=baseline, **values)  # type: ignore[arg-type]
