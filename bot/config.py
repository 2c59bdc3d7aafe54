"""The server's configuration: one typed object, loaded once from a YAML file and the environment
(environment variables win), passed down to the app and the worker. See README "Run it for your
team" for every key; each section's keys are declared as data (`TOP_KEYS`, each forge's `KEYS`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot import links
from bot.configkeys import ENV_PREFIX, LIMIT_KEYS, SANDBOX_KEYS, ConfigError, Key, read_keys
from bot.forges import FORGES
from bot.forges.base import ForgeConfig
from runner.engines import SCHEMES, scheme_of
from runner.engines.sandbox import UNTRUSTED, Sandbox
from runner.errors import SluiceError
from runner.janitor import parse_duration
from runner.limits import DEFAULT_LIMITS, Limits
from runner.naming import is_namespace, namespace_of
from runner.project.yamlfile import YamlMapping, load_yaml

__all__ = ["ENV_PREFIX", "TOP_KEYS", "ConfigError", "RepositoryConfig", "ServerConfig",
           "load_server_config"]


@dataclass(frozen=True)
class RepositoryConfig:
    forge: str
    name: str
    warehouses: tuple[str, ...] = ("default",)  # connections the repository may name
    production_branch: str | None = None  # None: the repository's default branch
    clone_url: str | None = None  # fetch from here instead of the webhook's URL (SSH, a mirror)
    namespace: str = ""  # in the warehouse's physical and environment schemas; "": from the name

    @property
    def warehouse_namespace(self) -> str:
        return self.namespace or namespace_of(self.name)

    @property
    def owner(self) -> str:
        """The repository as the owner of its production schemas: `gitlab:data/shop`."""
        return f"{self.forge}:{self.name}"


REPOSITORY_KEYS = ("forge", "name", "warehouses", "production_branch", "clone_url", "namespace")


INSTALLATION_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def installation_name(public_url: str) -> str:
    """An installation's default name, from its public URL: `https://sluice.example.com` is
    `sluice_example_com`; a port or a path count too, so two installations on one host differ."""
    rest = public_url.split("://", 1)[-1].strip("/").lower()
    slug = re.sub(r"[^a-z0-9]+", "_", rest).strip("_") or "sluice"
    slug = slug if slug[0].isalpha() else f"s_{slug}"
    return slug[:40].rstrip("_")


@dataclass(frozen=True)
class ServerConfig:
    name: str | None = None  # this installation's name (queues, locks, events); default: from public_url
    state_url: str = "sqlite:///.sluice-server/state.db"
    broker_url: str = "redis://127.0.0.1:6379/0"
    public_url: str = "http://127.0.0.1:8000"
    work_dir: Path = Path(".sluice-server")
    max_body_bytes: int = 5 * 1024 * 1024
    insecure: bool = False  # accept webhooks without a secret (development only)
    forges: Mapping[str, ForgeConfig] = field(default_factory=dict)  # by forge name (bot.forges)
    warehouses: Mapping[str, str] = field(default_factory=dict)
    repositories: tuple[RepositoryConfig, ...] = ()
    allow_local_clones: bool = False  # file:// and path clone URLs (tests, air-gapped mirrors)
    sweep_after: float = 30.0  # seconds before the sweeper re-sends an undispatched event
    policy_file: Path | None = None  # the server's policy; repositories can tighten, never loosen
    janitor_interval: float = 3600.0  # seconds between the worker's janitor passes (0: never)
    job_lease: float = 15.0  # a job's lease on its event (and on a one-writer warehouse), renewed
    # every third of it while its worker lives: a dead worker's work is taken over this long after
    job_retries: int = 5  # transient failures (forge 5xx, network, busy warehouse) tried again
    retry_backoff_ms: int = 1000  # the first retry's delay; it doubles, up to a minute
    janitor_ttl: str = "7d"  # physical objects unreferenced for longer are dropped
    deploy_hold: str = "8h"  # how long `/deploy <env>` holds the environment before it lapses
    limits: Limits = DEFAULT_LIMITS  # sizes, nesting and the report's time budget for repositories' files
    sandbox: Sandbox = UNTRUSTED  # how warehouses hold merge-request SQL
    link_secret: str | None = None  # the key of run links' tokens (default: from the webhook secrets)
    metrics_token: str | None = None  # the bearer token /metrics asks for; without it, no /metrics
    # dbt projects: the only variables of the worker's environment `env_var()` may read (comma-
    # separated names), and the read-only connection introspective macros use (PostgreSQL).
    dbt_env: str = ""
    dbt_introspection_url: str = ""

    def dbt_env_names(self) -> tuple[str, ...]:
        return tuple(n.strip() for n in self.dbt_env.split(",") if n.strip())

    @property
    def installation(self) -> str:
        """The name that keeps this installation's broker queue, locks and events apart from
        another's on the same broker and state store."""
        return self.name or installation_name(self.public_url)

    def repository(self, forge: str, name: str) -> RepositoryConfig | None:
        for repo in self.repositories:
            if repo.forge == forge and repo.name.lower() == name.lower():
                return repo
        return None

    def forge(self, name: str) -> ForgeConfig | None:
        return self.forges.get(name)

    def link_key(self) -> bytes:
        return links.link_key(self.link_secret, (f.webhook_secret or "" for f in self.forges.values()))

    def run_path(self, run_id: int) -> str:
        """The run page's path with its token: what the bot links to (`bot.links`)."""
        return f"/runs/{run_id}?token={links.run_token(self.link_key(), run_id)}"

    def run_url(self, run_id: int) -> str:
        return f"{self.public_url.rstrip('/')}{self.run_path(run_id)}"

    def run_folder(self, run_id: int) -> Path:
        """What a run leaves on disk (its dbt-shaped artifacts, one folder per environment)."""
        return self.work_dir / "runs" / str(run_id)

    def check_secrets(self) -> None:
        """Refuse to serve a forge without a webhook secret unless `insecure` was asked for."""
        if self.insecure:
            return
        for name, forge in self.forges.items():
            if not forge.webhook_secret:
                raise ConfigError(f"{name} has no webhook_secret: anyone could send events. Set "
                                  f"{Key('webhook_secret').variable(name)}, or pass --insecure "
                                  "for local development")
        if not self.forges:
            raise ConfigError(f"no forge configured: add a {_forge_sections()} section")


# The top level's plain settings (the sections, warehouses and repositories are read apart).
TOP_KEYS: tuple[Key, ...] = (
    Key("name"), Key("state_url"), Key("broker_url"), Key("public_url"), Key("work_dir", "path"),
    Key("max_body_bytes", "int"), Key("insecure", "bool"), Key("allow_local_clones", "bool"),
    Key("sweep_after", "float"), Key("policy_file", "path"), Key("janitor_interval", "float"),
    Key("janitor_ttl"), Key("job_lease", "float"), Key("job_retries", "int"),
    Key("retry_backoff_ms", "int"), Key("deploy_hold"), Key("link_secret"), Key("metrics_token"),
    Key("dbt_env"), Key("dbt_introspection_url"),
    *LIMIT_KEYS, *SANDBOX_KEYS,
)
CONFIG_VARIABLE = f"{ENV_PREFIX}CONFIG"


def load_server_config(path: Path | None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    environ = os.environ if environ is None else environ
    path = path or (Path(environ[CONFIG_VARIABLE]) if environ.get(CONFIG_VARIABLE) else None)
    data = load_yaml(path, str(path)) if path is not None else YamlMapping({}, {}, "<environment>", 1)
    data.check_keys({key.name for key in TOP_KEYS} | set(FORGES) | {"warehouses", "repositories"},
                    "the server configuration")
    values = read_keys(data, TOP_KEYS, environ)

    forges: dict[str, ForgeConfig] = {}
    for name, forge in FORGES.items():
        kind = forge.config_type
        triggered = any(environ.get(Key(k).variable(name)) for k in kind.TRIGGERS)
        if name in data or triggered:
            section = data.get_mapping(name)
            section.check_keys({key.name for key in kind.KEYS}, f"'{name}'")
            forges[name] = kind.from_values(read_keys(section, kind.KEYS, environ, name), section)

    warehouses = data.get_mapping("warehouses")
    warehouse_urls = {name: str(url) for name, url in warehouses.items()}
    for name, url in warehouse_urls.items():
        if not re.match(r"^[a-z][a-z0-9_]*$", name):
            raise warehouses.error(name, f"warehouse connection name {name!r} is not valid")
        if scheme_of(url) not in SCHEMES:
            raise warehouses.error(name, f"warehouse {name!r}: unsupported URL scheme")
    if not warehouse_urls:
        work = Path(values.get("work_dir", ServerConfig.work_dir)).resolve()
        warehouse_urls = {"default": f"duckdb:///{work / 'warehouse.duckdb'}"}

    repositories: list[RepositoryConfig] = []
    for entry in data.mappings("repositories"):
        entry.check_keys(set(REPOSITORY_KEYS), "a repositories entry")
        forge_name = entry.get_str("forge") or ""
        name = entry.get_str("name") or ""
        if forge_name not in FORGES or not name:
            raise entry.error(None, f"a repositories entry needs 'forge' ({' or '.join(FORGES)}) and "
                              "'name'")
        allowed = tuple(str(w) for w in entry.get_list("warehouses")) or ("default",)
        for w in allowed:
            if w not in warehouse_urls:
                raise entry.error("warehouses", f"repository {name}: unknown warehouse connection {w!r}")
        namespace = entry.get_str("namespace") or ""
        if namespace and not is_namespace(namespace):
            raise entry.error("namespace", f"repository {name}: namespace {namespace!r} is not valid: "
                              "use 1-20 lower-case letters, digits and single underscores, starting "
                              "with a letter")
        repository = RepositoryConfig(forge_name, name, allowed, entry.get_str("production_branch"),
                                      entry.get_str("clone_url"), namespace)
        # Two repositories in one namespace would name their warehouse objects alike.
        twin = next((r for r in repositories
                     if r.warehouse_namespace == repository.warehouse_namespace), None)
        if twin is not None:
            raise entry.error("namespace" if namespace else "name",
                              f"repositories {twin.owner} and {repository.owner} both have the namespace "
                              f"{repository.warehouse_namespace!r}: give one of them its own `namespace:`")
        repositories.append(repository)
    if not values.get("policy_file"):
        values.pop("policy_file", None)
    if "name" in values and not INSTALLATION_NAME.match(values["name"]):
        raise _error(data, "name", f"the installation name {values['name']!r} is not valid: use 1-40 "
                     "lower-case letters, digits and underscores, starting with a letter", environ)
    for key in ("deploy_hold", "janitor_ttl"):
        if key in values:
            try:
                parse_duration(values[key])
            except SluiceError as exc:
                raise _error(data, key, f"{key}: {exc.message}", environ) from None
    limits, sandbox = _limits(data, values, environ), _sandbox(data, values, environ)
    return dataclasses.replace(ServerConfig(), forges=forges, warehouses=warehouse_urls,
                               repositories=tuple(repositories), limits=limits, sandbox=sandbox,
                               **values)


MEMORY = re.compile(r"^\d+(\.\d+)?\s*([KMGT]i?B|B)$", re.IGNORECASE)


def _limits(data: YamlMapping, values: dict[str, Any], environ: Mapping[str, str]) -> Limits:
    """The limits' keys, taken out of `values`; every one a positive number (report_budget 0: none)."""
    given = {key.name: values.pop(key.name) for key in LIMIT_KEYS if key.name in values}
    for name, value in given.items():
        if value < 0 or (value == 0 and name != "report_budget"):
            raise _error(data, name, f"{name} must be a positive number, not {value}", environ)
    if given.get("report_budget") == 0:
        given["report_budget"] = None
    return Limits(**given)


def _sandbox(data: YamlMapping, values: dict[str, Any], environ: Mapping[str, str]) -> Sandbox:
    """The sandbox's keys, taken out of `values` (build_timeout 0: none)."""
    given = {key.name: values.pop(key.name) for key in SANDBOX_KEYS if key.name in values}
    renamed = {"duckdb_memory_limit": "memory_limit", "duckdb_threads": "threads"}
    for name in ("build_timeout", "duckdb_threads", "lock_timeout", "idle_in_transaction_timeout"):
        if name in given and (given[name] < 0 or (given[name] == 0 and name != "build_timeout")):
            raise _error(data, name, f"{name} must be a positive number, not {given[name]}", environ)
    if given.get("build_timeout") == 0:
        given["build_timeout"] = None
    if "duckdb_memory_limit" in given and not MEMORY.match(given["duckdb_memory_limit"].strip()):
        raise _error(data, "duckdb_memory_limit", "duckdb_memory_limit must be a size such as 4GB or "
                     f"512MiB, not {given['duckdb_memory_limit']!r}", environ)
    if "build_role" in given and not re.match(r"^[a-z_][a-z0-9_]{0,62}$", given["build_role"]):
        raise _error(data, "build_role", f"build_role {given['build_role']!r} is not a plain role name",
                     environ)
    return dataclasses.replace(UNTRUSTED, **{renamed.get(k, k): v for k, v in given.items()})


def _error(data: YamlMapping, key: str, message: str, environ: Mapping[str, str]) -> SluiceError:
    """A bad value, named by its line in server.yml (or by its variable, when it came from there)."""
    variable = Key(key).variable()
    if key in data and not environ.get(variable):
        return data.error(key, message)
    return ConfigError(f"the variable {variable}: {message}")


def _forge_sections() -> str:
    return " or ".join(f"'{name}'" for name in FORGES)
