"""The forges Sluice talks to: the one registry of forge names. The server configuration's
sections, the webhook routes, metrics labels, pages and the worker all ask it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.configkeys import ConfigError
from bot.forges.base import Forge
from bot.forges.github import GitHub
from bot.forges.gitlab import GitLab

if TYPE_CHECKING:
    from bot.config import ServerConfig

FORGES: dict[str, type[Forge]] = {forge.name: forge for forge in (GitLab, GitHub)}


def make_forge(name: str, config: ServerConfig) -> Forge:
    """The API client for forge `name`, from its section of the server configuration."""
    if name not in FORGES:
        raise ConfigError(f"unknown forge {name!r}: expected one of {', '.join(sorted(FORGES))}")
    section = config.forge(name)
    if section is None:
        raise ConfigError(f"{name} is not configured: add a '{name}' section")
    return FORGES[name](section)  # type: ignore[call-arg]
