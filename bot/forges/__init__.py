"""The forges Sluice talks to, by the name the server configuration and the webhook routes use."""

from __future__ import annotations

from bot.config import ConfigError, ServerConfig
from bot.forges.base import Forge
from bot.forges.github import GitHub
from bot.forges.gitlab import GitLab

FORGES: dict[str, type[Forge]] = {"gitlab": GitLab, "github": GitHub}


def make_forge(name: str, config: ServerConfig) -> Forge:
    """The API client for forge `name`, from its section of the server configuration."""
    if name == "gitlab":
        if config.gitlab is None:
            raise ConfigError("gitlab is not configured: add a 'gitlab' section")
        return GitLab(config.gitlab)
    if name == "github":
        if config.github is None:
            raise ConfigError("github is not configured: add a 'github' section")
        return GitHub(config.github)
    raise ConfigError(f"unknown forge {name!r}: expected one of {', '.join(sorted(FORGES))}")
