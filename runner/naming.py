"""Where things live in the warehouse, and what may be called what: physical snapshot tables,
environment views and the environment-name rule.

- physical layer: `sluice__<schema>.<name>__<fingerprint prefix>`;
- production views: `<schema>.<name>`; other environments: `<schema>__<env>.<name>`.
"""

from __future__ import annotations

import re

from sqlglot import exp

from runner.errors import ProjectError

PRODUCTION = "prod"
ENV_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # and no `__`: it separates schema and environment

PHYSICAL_PREFIX = "sluice__"
FINGERPRINT_CHARS = 10
TEMP_MARK = "__tmp_"


def is_environment_name(name: str) -> bool:
    return bool(ENV_NAME.match(name)) and "__" not in name


def check_environment_name(name: str) -> str:
    if not is_environment_name(name):
        raise ProjectError(
            f"environment name {name!r} is not valid: use 1-40 lower-case letters, digits and single "
            "underscores, starting with a letter"
        )
    return name


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
