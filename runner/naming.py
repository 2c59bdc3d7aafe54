"""Where things live in the warehouse: physical snapshot tables and environment views.

- physical layer: `sluice__<schema>.<name>__<fingerprint prefix>`;
- production views: `<schema>.<name>`; other environments: `<schema>__<env>.<name>`.
"""

from __future__ import annotations

from sqlglot import exp

from runner.project.config import PRODUCTION

PHYSICAL_PREFIX = "sluice__"
FINGERPRINT_CHARS = 10
TEMP_MARK = "__tmp_"


def physical_schema(schema: str) -> str:
    return f"{PHYSICAL_PREFIX}{schema}"


def physical_name(table: str, fingerprint: str) -> str:
    return f"{table}__{fingerprint[:FINGERPRINT_CHARS]}"


def environment_schema(schema: str, environment: str) -> str:
    return schema if environment == PRODUCTION else f"{schema}__{environment}"


def table(schema: str, name: str) -> exp.Table:
    return exp.Table(this=exp.to_identifier(name, quoted=True), db=exp.to_identifier(schema, quoted=True))


def dotted(schema: str, name: str) -> str:
    return f"{schema}.{name}"
