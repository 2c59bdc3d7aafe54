"""How tightly an engine holds the project SQL it runs: the server's settings for builds, one value
passed to `open_engine`, so that a hole in the static checks is still closed at the warehouse.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_BUILD_ROLE = "sluice_build"


@dataclass(frozen=True)
class Sandbox:
    build_timeout: float | None = 900.0  # seconds one model or seed build may take; None: no limit
    memory_limit: str = "4GB"  # DuckDB's memory_limit
    threads: int = 4  # DuckDB's threads
    lock_timeout: float = 300.0  # PostgreSQL: seconds a build waits for a lock
    idle_in_transaction_timeout: float = 600.0  # PostgreSQL: seconds a build's transaction may idle
    # Merge-request code: PostgreSQL builds run as the least-privilege build role, and a superuser
    # connection is refused unless `allow_superuser`.
    untrusted: bool = False
    allow_superuser: bool = False
    build_role: str | None = None  # PostgreSQL: the role builds run as (default: sluice_build)

    @property
    def role(self) -> str:
        return self.build_role or DEFAULT_BUILD_ROLE


TRUSTED = Sandbox()
UNTRUSTED = Sandbox(untrusted=True)


def timed_out(seconds: float) -> str:
    """The one line a build stopped by the build timeout ends with."""
    return (f"stopped after {seconds:g} s, the build timeout; the server setting build_timeout "
            "raises it")
