"""Where things live in the warehouse, and what may be called what: physical snapshot tables,
environment views, a repository's namespace and the environment-name rule.

- physical layer: `sluice__<schema>.<name>__<fingerprint prefix>`, and for a repository with a
  namespace (the bot's: several repositories may share a warehouse) `sluice__<ns>__<schema>`;
- production views: `<schema>.<name>` (what consumers read: never namespaced; two repositories
  may not both write one production schema, see `runner.state.claims`); other environments:
  `<schema>__<env>.<name>`, with a namespace `<schema>__<ns>__<env>.<name>`.

Every generated identifier fits PostgreSQL's 63 bytes: a longer one is cut and ends in a hash of
the whole name, so two long names never truncate into one.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlglot import exp

from runner.errors import ProjectError

PRODUCTION = "prod"
ENV_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")  # and no `__`: it separates schema and environment

PHYSICAL_PREFIX = "sluice__"
FINGERPRINT_CHARS = 10
TEMP_MARK = "__tmp_"
MAX_IDENTIFIER = 63  # bytes: PostgreSQL cuts longer names silently
NAMESPACE = re.compile(r"^[a-z][a-z0-9_]{0,19}$")  # and no `__`, like environment names
NAMESPACE_CHARS = 20
HASH_CHARS = 8


@dataclass(frozen=True)
class Layout:
    """Where one repository's objects live in a warehouse. `namespace` ("": none, a laptop's)
    goes into every physical and non-production environment schema; `owner` (the repository,
    e.g. `gitlab:data/shop`; "": a laptop's) claims the production schemas it writes."""

    namespace: str = ""
    owner: str = ""

    def physical_schema(self, schema: str) -> str:
        return physical_schema(schema, self.namespace)

    def environment_schema(self, schema: str, environment: str) -> str:
        return environment_schema(schema, environment, self.namespace)


def bounded(identifier: str) -> str:
    """`identifier`, or when longer than PostgreSQL's 63 bytes, its start and a hash of it all."""
    if len(identifier.encode()) <= MAX_IDENTIFIER:
        return identifier
    digest = hashlib.sha256(identifier.encode()).hexdigest()[:HASH_CHARS]
    head = identifier.encode()[:MAX_IDENTIFIER - HASH_CHARS - 1].decode(errors="ignore")
    return f"{head}_{digest}"


def namespace_of(name: str) -> str:
    """A repository's default namespace from its name (`data/shop` -> `data_shop`): identifier
    characters only, at most 20, a hash of the whole name ending a longer one."""
    slug = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    slug = re.sub(r"_+", "_", slug) or "repo"
    slug = slug if slug[0].isalpha() else f"r_{slug}"
    if len(slug) <= NAMESPACE_CHARS:
        return slug
    digest = hashlib.sha256(name.encode()).hexdigest()[:6]
    return f"{slug[:NAMESPACE_CHARS - 7].rstrip('_')}_{digest}"


def is_namespace(name: str) -> bool:
    return bool(NAMESPACE.match(name)) and "__" not in name


def is_environment_name(name: str) -> bool:
    return bool(ENV_NAME.match(name)) and "__" not in name


def check_environment_name(name: str) -> str:
    if not is_environment_name(name):
        raise ProjectError(
            f"environment name {name!r} is not valid: use 1-40 lower-case letters, digits and single "
            "underscores, starting with a letter"
        )
    return name


def physical_schema(schema: str, namespace: str = "") -> str:
    return bounded(f"{PHYSICAL_PREFIX}{namespace}__{schema}" if namespace else f"{PHYSICAL_PREFIX}{schema}")


def physical_name(table: str, fingerprint: str) -> str:
    return bounded(f"{table}__{fingerprint[:FINGERPRINT_CHARS]}")


def environment_schema(schema: str, environment: str, namespace: str = "") -> str:
    if environment == PRODUCTION:
        return schema
    return bounded(f"{schema}__{namespace}__{environment}" if namespace else f"{schema}__{environment}")


def table(schema: str, name: str) -> exp.Table:
    return exp.Table(this=exp.to_identifier(name, quoted=True), db=exp.to_identifier(schema, quoted=True))


def dotted(schema: str, name: str) -> str:
    return f"{schema}.{name}"
