"""dbt's compiled manifest as a Sluice project: each node becomes the model, seed, source, test or
exposure it is, named by its production relation (`schema.alias`).

Compiled SQL names the relations of the target it was compiled for (`"memory"."main"."orders"`);
each is rewritten to the node's Sluice name, so building, environments, reuse and promotion treat
it exactly as a plain project's model (`runner.rewrite` then points it at physical snapshots).
Ephemeral models are already inlined by dbt as `__dbt__cte__` CTEs; what they read counts as
read by the models that inline them.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from runner.errors import ProjectError
from runner.project.cache import ParseCache
from runner.project.config import ProjectConfig
from runner.project.graph import project_dag
from runner.project.nodes import Column, DataTest, Exposure, Model, Names, Project, Seed, Source
from runner.project.parsing import ParsedQuery

_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")
BUILT_IN_FULL = "incremental: built in full (is_incremental() is false)"


def project_from_manifest(root: Path, config: ProjectConfig, manifest: Mapping[str, Any],
                          cache: ParseCache) -> Project:
    nodes = [n for n in manifest.get("nodes", []) if (n.get("config") or {}).get("enabled", True)]
    by_id: dict[str, dict[str, Any]] = {n["unique_id"]: n for n in nodes}
    by_id.update({s["unique_id"]: s for s in manifest.get("sources", [])})

    names: dict[str, str] = {}  # unique_id -> Sluice name (models, seeds, sources)
    ephemeral: dict[str, list[str]] = {}  # unique_id -> what it reads
    for uid, node in by_id.items():
        kind = node["resource_type"]
        materialized = (node.get("config") or {}).get("materialized")
        if kind == "model" and materialized == "ephemeral":
            ephemeral[uid] = list(node.get("depends_on") or [])
        elif kind in ("model", "seed"):
            names[uid] = _name(node["schema"], node.get("alias") or node["name"])
        elif kind == "source":
            names[uid] = _name(node["schema"], node.get("identifier") or node["name"])
    relations = {by_id[uid]["relation_name"]: name for uid, name in names.items()
                 if by_id[uid].get("relation_name")}
    rewrite = _rewriter(relations)

    def parents(uid: str) -> set[str]:
        out: set[str] = set()
        for dep in by_id.get(uid, {}).get("depends_on") or []:
            if dep in ephemeral:
                out |= parents(dep)
            elif dep in names:
                out.add(names[dep])
        return out

    seeds: dict[str, Seed] = {}
    sources: dict[str, Source] = {}
    models: dict[str, Model] = {}
    parsed: dict[str, ParsedQuery] = {}
    seen: dict[str, str] = {}
    for uid, name in names.items():
        node = by_id[uid]
        if name in seen:
            raise ProjectError(f"{node['original_file_path']} and {seen[name]} both make the relation "
                               f"{name!r} in production (check their schema and alias configs)",
                               file=node["original_file_path"])
        seen[name] = node["original_file_path"]
        schema, table = name.split(".", 1)
        if node["resource_type"] == "seed":
            seeds[name] = _seed(root, node, name, schema, table)
        elif node["resource_type"] == "source":
            declared = tuple(c["name"].lower() for c in node.get("columns") or [] if c.get("name"))
            sources[name] = Source(name=name, schema=schema, table=table, columns=declared or None,
                                   file=node["original_file_path"])
    for uid, name in names.items():
        node = by_id[uid]
        if node["resource_type"] != "model":
            continue
        query = _check(cache, rewrite(node.get("compiled_code") or ""), config.dialect,
                       node["original_file_path"])
        parsed[name] = query
        models[name] = _model(node, name, query, sorted(parents(uid) - set(sources)))

    tests = [_test(node, names, ephemeral, rewrite, cache, config, parents)
             for node in nodes if node["resource_type"] == "test"]
    project_names = Names.of(dict.fromkeys(models), seeds, sources)
    exposures = [_exposure(e, names) for e in manifest.get("exposures", [])]

    dag = project_dag(models, seeds, project_names)
    return Project(root=root, config=config, models=models, seeds=seeds, sources=sources,
                   tests=tuple(tests), dag=dag, names=project_names, exposures=tuple(exposures),
                   compiled=True)


def _name(schema: str, table: str) -> str:
    return f"{schema.lower()}.{table.lower()}"


def _rewriter(relations: Mapping[str, str]) -> Any:
    """Replace each relation as dbt rendered it with the node's two-part Sluice name."""
    if not relations:
        return lambda sql: sql
    ordered = sorted(relations, key=len, reverse=True)
    pattern = re.compile("|".join(re.escape(r) for r in ordered) + r"""(?![\w"])""")

    def sluice_name(name: str) -> str:
        return ".".join(part if _PLAIN.match(part) else '"' + part + '"' for part in name.split(".", 1))

    targets = {relation: sluice_name(name) for relation, name in relations.items()}

    def rewrite(sql: str) -> str:
        return pattern.sub(lambda m: targets[m.group(0)], sql)

    return rewrite


def _check(cache: ParseCache, sql: str, dialect: str, file: str) -> ParsedQuery:
    """The compiled SQL parses as a plain model's does (the parser refuses writes and DDL); the
    whole mapped project then passes the allowlist check (`check_compiled`)."""
    return cache.parse(sql, dialect, file)


def _model(node: dict[str, Any], name: str, query: ParsedQuery, depends: list[str]) -> Model:
    config = node.get("config") or {}
    materialized = config.get("materialized") or "table"
    schema, table = name.split(".", 1)
    notes: tuple[str, ...] = (BUILT_IN_FULL,) if materialized == "incremental" else ()
    raw_key = config.get("unique_key")
    unique_key = tuple(k.lower() for k in ([raw_key] if isinstance(raw_key, str) else raw_key or ()))
    tags = tuple(str(t) for t in node.get("tags") or config.get("tags") or ())
    return Model(
        name=name, schema=schema, table=table, path=node["original_file_path"],
        canonical=query.canonical, depends_on=tuple(depends), refs=query.refs,
        materialized="view" if materialized == "view" else "table", unique_key=unique_key,
        description=node.get("description") or "", tags=tags,
        columns=tuple(Column(c["name"].lower(), c.get("description") or "", tuple(c.get("tags") or ()))
                      for c in node.get("columns") or [] if c.get("name")),
        notes=notes,
        # What dbt was told, where Sluice builds it otherwise: selectors (`config.materialized:`)
        # and fingerprints see it.
        config=(("materialized", "incremental"),) if materialized == "incremental" else (),
    )


def _seed(root: Path, node: dict[str, Any], name: str, schema: str, table: str) -> Seed:
    rel = node["original_file_path"]
    try:
        data = (root / rel).read_bytes()
    except OSError as exc:
        raise ProjectError(f"cannot read the seed: {exc}", file=rel) from None
    header = next(csv.reader(data.decode("utf-8-sig", errors="replace").splitlines()), None) or []
    types = (node.get("config") or {}).get("column_types") or {}
    column_types = tuple(sorted((str(k).lower(), str(v)) for k, v in types.items()))
    content = hashlib.sha256(data + json.dumps(column_types).encode()).hexdigest()
    return Seed(name=name, schema=schema, table=table, path=rel, content_hash=content,
                columns=tuple(h.strip().lower() for h in header), column_types=column_types)


def _test(node: dict[str, Any], names: Mapping[str, str], ephemeral: Mapping[str, Any], rewrite: Any,
          cache: ParseCache, config: ProjectConfig, parents: Any) -> DataTest:
    file = node["original_file_path"]
    query = _check(cache, rewrite(node.get("compiled_code") or ""), config.dialect, file)
    settings = node.get("config") or {}
    attached = node.get("attached_node")
    severity = str(settings.get("severity") or "error").lower()
    if severity not in ("error", "warn"):
        raise ProjectError(f"test {node['name']!r}: severity must be 'error' or 'warn'", file=file)
    limit = settings.get("limit")
    metadata = node.get("test_metadata") or {}
    return DataTest(
        kind=str(metadata.get("name") or "singular"), model=names.get(attached) if attached else None,
        column=(node.get("column_name") or "").lower() or None, file=file, line=None,
        sql=query.canonical, depends_on=tuple(sorted(parents(node["unique_id"]))),
        label=node["name"], severity=severity,
        warn_if=str(settings.get("warn_if") or "!= 0"), error_if=str(settings.get("error_if") or "!= 0"),
        limit=int(limit) if isinstance(limit, int) else None,
        fail_calc=str(settings.get("fail_calc") or "count(*)"),
    )


def _exposure(raw: Mapping[str, Any], names: Mapping[str, str]) -> Exposure:
    owner = raw.get("owner") or {}
    owner_text = " ".join(str(owner[k]) for k in ("name", "email") if owner.get(k))
    depends = tuple(names[d] for d in raw.get("depends_on") or [] if d in names)
    return Exposure(name=str(raw["name"]), type=str(raw.get("type") or ""), depends_on=depends,
                    owner=owner_text, url=str(raw.get("url") or ""),
                    description=str(raw.get("description") or ""),
                    file=str(raw.get("original_file_path") or ""))

