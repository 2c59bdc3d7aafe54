"""The dbt profile Sluice writes for a compile: one `prod` target, never the repository's own
profiles.yml (which may name credentials or a warehouse the server does not allow)."""

from __future__ import annotations

import json

from runner.engines import DIALECTS, engine_class_for
from runner.errors import ProjectError


def profile_yaml(profile: str, dialect: str, schema: str, warehouse_url: str | None) -> str:
    """profiles.yml text (JSON is YAML) for `profile`'s `prod` target: the engine's dbt target
    (see `Engine.dbt_target`) in the production schema, one thread."""
    target = engine_class_for(dialect).dbt_target(warehouse_url) if dialect in DIALECTS else None
    if target is None:
        raise ProjectError(f"dbt projects are not supported on the dialect {dialect!r}", file="sluice.yml")
    target.update({"schema": schema, "threads": 1})
    return json.dumps({profile: {"target": "prod", "outputs": {"prod": target}}}, indent=1)
