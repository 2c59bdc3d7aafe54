"""The server's configuration: one typed object, loaded once from a YAML file and the environment
(environment variables win), passed down to the app and the worker. See README "Run it for your
team" for every key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import SluiceError
from runner.project.yamlfile import YamlMapping, load_yaml

ENV_PREFIX = "SLUICE_"


class ConfigError(SluiceError):
    """The server configuration is invalid."""


@dataclass(frozen=True)
class GitLabConfig:
    url: str = "https://gitlab.com"
    token: str | None = None
    webhook_secret: str | None = None


@dataclass(frozen=True)
class GitHubConfig:
    api_url: str = "https://api.github.com"
    token: str | None = None
    app_id: int | None = None
    private_key: str | None = None  # PEM text of the GitHub App's key
    webhook_secret: str | None = None


@dataclass(frozen=True)
class RepositoryConfig:
    forge: str
    name: str
    warehouses: tuple[str, ...] = ("default",)  # connections the repository may name
    production_branch: str | None = None  # None: the repository's default branch
    clone_url: str | None = None  # fetch from here instead of the webhook's URL (SSH, a mirror)


@dataclass(frozen=True)
class ServerConfig:
    state_url: str = "sqlite:///.sluice-server/state.db"
    broker_url: str = "redis://127.0.0.1:6379/0"
    public_url: str = "http://127.0.0.1:8000"
    work_dir: Path = Path(".sluice-server")
    max_body_bytes: int = 5 * 1024 * 1024
    insecure: bool = False  # accept webhooks without a secret (development only)
    gitlab: GitLabConfig | None = None
    github: GitHubConfig | None = None
    warehouses: Mapping[str, str] = field(default_factory=dict)
    repositories: tuple[RepositoryConfig, ...] = ()
    allow_local_clones: bool = False  # file:// and path clone URLs (tests, air-gapped mirrors)
    sweep_after: float = 30.0  # seconds before the sweeper re-sends an undispatched event
    policy_file: Path | None = None  # the server's policy; repositories can tighten, never loosen
    janitor_interval: float = 3600.0  # seconds between the worker's janitor passes (0: never)
    job_lease: float = 3600.0  # a job's hold on its event; a dead worker's event is sent again after
    job_retries: int = 5  # transient failures (forge 5xx, network, busy warehouse) tried again
    retry_backoff_ms: int = 1000  # the first retry's delay; it doubles, up to a minute
    janitor_ttl: str = "7d"  # physical objects unreferenced for longer are dropped

    def repository(self, forge: str, name: str) -> RepositoryConfig | None:
        for repo in self.repositories:
            if repo.forge == forge and repo.name.lower() == name.lower():
                return repo
        return None

    def run_url(self, run_id: int) -> str:
        return f"{self.public_url.rstrip('/')}/runs/{run_id}"

    def check_secrets(self) -> None:
        """Refuse to serve a forge without a webhook secret unless `insecure` was asked for."""
        if self.insecure:
            return
        for name, forge in (("gitlab", self.gitlab), ("github", self.github)):
            if forge is not None and not forge.webhook_secret:
                raise ConfigError(f"{name} has no webhook_secret: anyone could send events. Set "
                                  f"{ENV_PREFIX}{name.upper()}_WEBHOOK_SECRET, or pass --insecure "
                                  "for local development")
        if self.gitlab is None and self.github is None:
            raise ConfigError("no forge configured: add a 'gitlab' or 'github' section")


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> ServerConfig:
    environ = os.environ if environ is None else environ
    path = path or (Path(environ[f"{ENV_PREFIX}CONFIG"]) if environ.get(f"{ENV_PREFIX}CONFIG") else None)
    data = load_yaml(path, str(path)) if path is not None else YamlMapping({}, {}, "<environment>", 1)
    data.check_keys({"state_url", "broker_url", "public_url", "work_dir", "max_body_bytes", "insecure",
                     "gitlab", "github", "warehouses", "repositories", "allow_local_clones",
                     "sweep_after", "policy_file", "janitor_interval", "janitor_ttl", "job_lease",
                     "job_retries", "retry_backoff_ms"},
                    "the server configuration")

    def setting(key: str, default: str | None = None, where: YamlMapping = data,
                env: str | None = None) -> str | None:
        value = environ.get(env or f"{ENV_PREFIX}{key.upper()}")
        if value:
            return value
        found = where.get(key)
        if found is None:
            return default
        if isinstance(found, bool):
            return "true" if found else "false"
        if not isinstance(found, str | int | float):
            raise where.error(key, f"{key!r} must be a string, a number or true/false")
        return str(found)

    gitlab = github = None
    if "gitlab" in data or environ.get(f"{ENV_PREFIX}GITLAB_TOKEN"):
        section = data.get_mapping("gitlab")
        section.check_keys({"url", "token", "webhook_secret"}, "'gitlab'")
        gitlab = GitLabConfig(
            url=setting("url", "https://gitlab.com", section, f"{ENV_PREFIX}GITLAB_URL") or "",
            token=setting("token", None, section, f"{ENV_PREFIX}GITLAB_TOKEN"),
            webhook_secret=setting("webhook_secret", None, section, f"{ENV_PREFIX}GITLAB_WEBHOOK_SECRET"))
    github_env = environ.get(f"{ENV_PREFIX}GITHUB_TOKEN") or environ.get(f"{ENV_PREFIX}GITHUB_APP_ID")
    if "github" in data or github_env:
        section = data.get_mapping("github")
        section.check_keys({"api_url", "token", "app_id", "private_key", "private_key_path",
                            "webhook_secret"}, "'github'")
        app_id = setting("app_id", None, section, f"{ENV_PREFIX}GITHUB_APP_ID")
        key = setting("private_key", None, section, f"{ENV_PREFIX}GITHUB_PRIVATE_KEY")
        key_path = setting("private_key_path", None, section, f"{ENV_PREFIX}GITHUB_PRIVATE_KEY_PATH")
        if key is None and key_path:
            try:
                key = Path(key_path).read_text()
            except OSError as exc:
                raise section.error("private_key_path", f"cannot read the GitHub App key: {exc}") from None
        if app_id is not None and not str(app_id).isdigit():
            raise section.error("app_id", "'app_id' must be the GitHub App's numeric id")
        github = GitHubConfig(
            api_url=setting("api_url", "https://api.github.com", section,
                            f"{ENV_PREFIX}GITHUB_API_URL") or "",
            token=setting("token", None, section, f"{ENV_PREFIX}GITHUB_TOKEN"),
            app_id=int(app_id) if app_id else None, private_key=key,
            webhook_secret=setting("webhook_secret", None, section, f"{ENV_PREFIX}GITHUB_WEBHOOK_SECRET"))
        if github.token is None and (github.app_id is None or github.private_key is None):
            raise section.error(None, "github needs a token, or an app_id with a private key")

    warehouses = data.get_mapping("warehouses")
    warehouse_urls = {name: str(url) for name, url in warehouses.items()}
    for name, url in warehouse_urls.items():
        if not re.match(r"^[a-z][a-z0-9_]*$", name):
            raise warehouses.error(name, f"warehouse connection name {name!r} is not valid")
        if url.split("://", 1)[0] not in ("duckdb", "postgresql", "postgresql+psycopg", "postgres"):
            raise warehouses.error(name, f"warehouse {name!r}: unsupported URL scheme")
    if not warehouse_urls:
        work = Path(setting("work_dir", ".sluice-server") or ".sluice-server").resolve()
        warehouse_urls = {"default": f"duckdb:///{work / 'warehouse.duckdb'}"}

    repositories = []
    for entry in data.mappings("repositories"):
        entry.check_keys({"forge", "name", "warehouses", "production_branch", "clone_url"},
                         "a repositories entry")
        forge = entry.get_str("forge") or ""
        name = entry.get_str("name") or ""
        if forge not in ("gitlab", "github") or not name:
            raise entry.error(None, "a repositories entry needs 'forge' (gitlab or github) and 'name'")
        allowed = tuple(str(w) for w in entry.get_list("warehouses")) or ("default",)
        for w in allowed:
            if w not in warehouse_urls:
                raise entry.error("warehouses", f"repository {name}: unknown warehouse connection {w!r}")
        repositories.append(RepositoryConfig(forge, name, allowed, entry.get_str("production_branch"),
                                             entry.get_str("clone_url")))

    insecure_text = setting("insecure", "false") or "false"
    local_text = setting("allow_local_clones", "false") or "false"
    try:
        max_body = int(setting("max_body_bytes", str(5 * 1024 * 1024)) or 0)
        sweep_after = float(setting("sweep_after", "30") or 30)
        janitor_interval = float(setting("janitor_interval", "3600") or 0)
        job_lease = float(setting("job_lease", "3600") or 3600)
        job_retries = int(setting("job_retries", "5") or 0)
        retry_backoff_ms = int(setting("retry_backoff_ms", "1000") or 1000)
    except ValueError:
        raise ConfigError("max_body_bytes, sweep_after, janitor_interval, job_lease, job_retries and "
                          "retry_backoff_ms must be numbers") from None
    return ServerConfig(
        state_url=setting("state_url", ServerConfig.state_url) or ServerConfig.state_url,
        broker_url=setting("broker_url", ServerConfig.broker_url) or ServerConfig.broker_url,
        public_url=setting("public_url", ServerConfig.public_url) or ServerConfig.public_url,
        work_dir=Path(setting("work_dir", ".sluice-server") or ".sluice-server"),
        max_body_bytes=max_body, insecure=insecure_text.lower() in ("1", "true", "yes"),
        gitlab=gitlab, github=github, warehouses=warehouse_urls, repositories=tuple(repositories),
        allow_local_clones=local_text.lower() in ("1", "true", "yes"), sweep_after=sweep_after,
        policy_file=Path(policy_text) if (policy_text := setting("policy_file")) else None,
        janitor_interval=janitor_interval, janitor_ttl=setting("janitor_ttl", "7d") or "7d",
        job_lease=job_lease, job_retries=job_retries, retry_backoff_ms=retry_backoff_ms,
    )
