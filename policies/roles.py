"""Repository roles by name, in the forges' common order (the same numbers as `bot.forges.Role`)."""

from __future__ import annotations

ROLES: dict[str, int] = {"none": 0, "read": 10, "developer": 30, "maintainer": 40, "owner": 50}


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
