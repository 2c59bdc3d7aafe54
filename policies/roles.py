"""Repository roles: the one vocabulary of who may do what, in GitLab's and GitHub's common order.
The forges map their own levels onto `Role`; policies name roles by these words."""

from __future__ import annotations

from enum import IntEnum


class Role(IntEnum):
    """A user's permission on a repository."""

    NONE = 0
    READ = 10  # GitLab guest/reporter; GitHub read/triage
    DEVELOPER = 30  # GitLab developer; GitHub write
    MAINTAINER = 40  # GitLab maintainer; GitHub maintain
    OWNER = 50  # GitLab owner; GitHub admin


ROLES: dict[str, int] = {role.name.lower(): int(role) for role in Role}


def role_name(role: int) -> str:
    """The name of a role number; a number between two roles reads as the one below it."""
    name = "none"
    for candidate, value in ROLES.items():
        if value <= role:
            name = candidate
    return name


def role_names(roles: tuple[int, ...] | frozenset[int]) -> str:
    """`maintainer or owner`, for messages."""
    names = [role_name(r) for r in sorted(roles)]
    if not names:
        return "nobody"
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]
