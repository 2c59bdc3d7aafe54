"""The gate every piece of merge-request SQL passes before anything runs: one query, the project's own
tables, and functions from a reviewed allowlist per dialect (`policies/allowlists/`)."""

from runner.safety.allowlist import Allowlist, load_allowlist
from runner.safety.check import (
    Refusal,
    UnsafeSQL,
    check_body,
    check_canonical,
    check_query,
    check_sql,
    refuse_unsafe,
)

__all__ = ["Allowlist", "Refusal", "UnsafeSQL", "check_body", "check_canonical", "check_query", "check_sql",
           "load_allowlist", "refuse_unsafe"]
