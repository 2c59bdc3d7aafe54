"""dbt-shaped artifacts of one environment: `manifest.json` (dbt's manifest v12), `run_results.json`
(run-results v6) and `catalog.json` (catalog v1), so tools that read dbt's artifacts (Recce,
Datafold, `dbt docs`) can read a Sluice environment.

Relations are the environment's views (`marts__mr_42.orders`), as dbt would name them for a target
of that schema; compiled code reads those views. The manifest and run results are pure functions of
the project and the run; only the catalog asks the warehouse (its columns and types).
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlglot import exp

from runner.datatests import TestResult, failing_rows_query
from runner.engines.base import Engine
from runner.errors import WarehouseError
from runner.naming import environment_schema, table
from runner.pipeline import RunResult
from runner.plan.definition import Action, Plan
from runner.plan.fingerprint import data_test_fingerprint
from runner.project.nodes import DataTest, Exposure, Model, Project, Seed, Source
from runner.rewrite import physical_query

MANIFEST_SCHEMA = "https://schemas.getdbt.com/dbt/manifest/v12.json"
RUN_RESULTS_SCHEMA = "https://schemas.getdbt.com/dbt/run-results/v6.json"
CATALOG_SCHEMA = "https://schemas.getdbt.com/dbt/catalog/v1.json"
# The dbt release whose artifact versions these are (readers gate features on it).
DBT_VERSION = "1.10.0"
FILES = ("manifest.json", "run_results.json", "catalog.json")
# dbt's exposure types; Sluice's reverse_etl is an application that reads the project.
EXPOSURE_TYPES = {"dashboard": "dashboard", "notebook": "notebook", "analysis": "analysis", "ml": "ml",
                  "application": "application", "reverse_etl": "application"}


@dataclass(frozen=True)
class Invocation:
    """What the three artifacts of one run share."""

    environment: str
    database: str
    adapter_type: str
    invocation_id: str
    generated_at: float

    @classmethod
    def now(cls, environment: str, database: str, adapter_type: str) -> Invocation:
        return cls(environment, database, adapter_type, str(uuid.uuid4()), time.time())

    def metadata(self, schema_version: str) -> dict[str, Any]:
        return {"dbt_schema_version": schema_version, "dbt_version": DBT_VERSION,
                "generated_at": _iso(self.generated_at), "invocation_id": self.invocation_id,
                "invocation_started_at": _iso(self.generated_at), "env": {}}


# -- names ------------------------------------------------------------------------------------------


class Ids:
    """dbt's unique ids for a project's nodes: `model.<project>.<name>`, the table name when it is
    unique in the project, else schema_table."""

    def __init__(self, project: Project):
        self.project = project
        self.package = project.config.name
        self._short: dict[str, list[str]] = {}
        for node in (*project.models, *project.seeds):  # sources have their own ids
            self._short.setdefault(node.split(".", 1)[1], []).append(node)

    def name(self, node: str) -> str:
        schema, name = node.split(".", 1)
        return name if len(self._short.get(name, ())) <= 1 else f"{schema}_{name}"

    def of(self, node: str) -> str:
        if node in self.project.models:
            return f"model.{self.package}.{self.name(node)}"
        if node in self.project.seeds:
            return f"seed.{self.package}.{self.name(node)}"
        schema, name = node.split(".", 1)
        return f"source.{self.package}.{schema}.{name}"

    def test(self, test: DataTest) -> str:
        return f"test.{self.package}.{test_name(test)}.{data_test_fingerprint(test)[:10]}"

    def exposure(self, exposure: Exposure) -> str:
        return f"exposure.{self.package}.{exposure.name}"


def test_name(test: DataTest) -> str:
    if test.kind == "singular":
        return Path(test.file).stem
    table_name = (test.model or "").split(".", 1)[-1]
    return f"{test.kind}_{table_name}_{test.column}"


def relation_name(database: str, schema: str, name: str) -> str:
    return ".".join(f'"{part}"' for part in (database, schema, name) if part)


# -- manifest.json ----------------------------------------------------------------------------------


def manifest(project: Project, plan: Plan, invocation: Invocation) -> dict[str, Any]:
    ids = Ids(project)
    env = invocation.environment
    in_env = {n.name for n in plan.nodes if n.action is not Action.DROP}
    views = {name: (environment_schema(name.split(".", 1)[0], env), name.split(".", 1)[1])
             for name in in_env}
    nodes: dict[str, Any] = {}
    for name in project.dag.order:
        if name not in in_env:
            continue
        if name in project.models:
            nodes[ids.of(name)] = _model_node(project, project.models[name], plan, ids, invocation, views)
        elif name in project.seeds:
            nodes[ids.of(name)] = _seed_node(project, project.seeds[name], plan, ids, invocation)
    for test in project.tests:
        if all(d in in_env or d in project.sources for d in (test.model, *test.depends_on) if d):
            nodes[ids.test(test)] = _test_node(project, test, ids, invocation, views)
    sources = {ids.of(name): _source_node(project, source, ids, invocation)
               for name, source in sorted(project.sources.items())}
    exposures = {ids.exposure(e): _exposure_node(project, e, ids, invocation) for e in project.exposures}
    parents: dict[str, list[str]] = {uid: [] for uid in sources}
    for uid, node in (*nodes.items(), *exposures.items()):
        parents[uid] = list(node["depends_on"].get("nodes", ()))
    children: dict[str, list[str]] = {uid: [] for uid in parents}
    for uid, ups in parents.items():
        for up in ups:
            children.setdefault(up, []).append(uid)
    metadata = invocation.metadata(MANIFEST_SCHEMA)
    metadata.update({"project_name": project.config.name,
                     "project_id": hashlib.md5(project.config.name.encode()).hexdigest(),
                     "user_id": None, "send_anonymous_usage_stats": False,
                     "adapter_type": invocation.adapter_type})
    return {
        "metadata": metadata, "nodes": nodes, "sources": sources, "macros": {}, "docs": {},
        "exposures": exposures, "metrics": {}, "groups": {}, "selectors": {}, "disabled": {},
        "parent_map": {k: sorted(v) for k, v in parents.items()},
        "child_map": {k: sorted(v) for k, v in children.items()},
        "group_map": {}, "saved_queries": {}, "semantic_models": {}, "unit_tests": {},
    }


def _common(project: Project, invocation: Invocation, *, uid: str, name: str, resource_type: str,
            schema: str, path: str, fqn: list[str], tags: Sequence[str] = (),
            description: str = "") -> dict[str, Any]:
    return {
        "database": invocation.database, "schema": schema, "name": name, "alias": name,
        "resource_type": resource_type, "package_name": project.config.name,
        "path": path, "original_file_path": path, "unique_id": uid, "fqn": fqn,
        "tags": list(tags), "description": description, "meta": {}, "group": None,
        "docs": {"show": True, "node_color": None}, "patch_path": None, "build_path": None,
        "unrendered_config": {}, "created_at": invocation.generated_at, "config_call_dict": {},
        "unrendered_config_call_dict": {}, "doc_blocks": [],
    }


def _config(materialized: str, tags: Sequence[str], **more: Any) -> dict[str, Any]:
    return {"enabled": True, "alias": None, "schema": None, "database": None, "tags": list(tags),
            "meta": {}, "group": None, "materialized": materialized, "persist_docs": {},
            "post-hook": [], "pre-hook": [], "quoting": {}, "column_types": {},
            "full_refresh": None, "on_schema_change": "ignore", "docs": {"show": True, "node_color": None},
            "contract": {"enforced": False, "alias_types": True}, "access": "protected", **more}


def _columns(columns: Sequence[tuple[str, str, Sequence[str]]]) -> dict[str, Any]:
    return {name: {"name": name, "description": description, "meta": {}, "data_type": None,
                   "constraints": [], "quote": None, "tags": list(tags), "granularity": None,
                   "doc_blocks": []}
            for name, description, tags in columns}


def _fqn(project: Project, path: str, root: str, name: str) -> list[str]:
    folders = Path(path).relative_to(root).parent.parts if path.startswith(root + "/") else ()
    return [project.config.name, *folders, name]


def _checksum(project: Project, path: str) -> dict[str, str]:
    file = project.root / path
    data = file.read_bytes() if file.is_file() else b""
    return {"name": "sha256", "checksum": hashlib.sha256(data).hexdigest()}


def _raw(project: Project, path: str) -> str:
    file = project.root / path
    return file.read_text(errors="replace") if file.is_file() else ""


def _model_node(project: Project, model: Model, plan: Plan, ids: Ids, invocation: Invocation,
                views: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    planned = plan.node(model.name)
    schema = environment_schema(model.schema, invocation.environment)
    root = project.config.models_path
    depends = [ids.of(d) for d in model.depends_on]
    source_refs = sorted({t for ref in model.refs
                          if (t := project.resolve(ref.parts)) is not None and t in project.sources})
    depends += [ids.of(s) for s in source_refs]
    compiled = physical_query(model.canonical, project.config.dialect, project.resolve, views)
    node = _common(project, invocation, uid=ids.of(model.name), name=model.table, resource_type="model",
                   schema=schema, path=model.path, fqn=_fqn(project, model.path, root, model.table),
                   tags=model.tags, description=model.description)
    extra: dict[str, Any] = dict(model.config)
    materialized = str(extra.pop("materialized", model.materialized))  # as declared (dbt's incremental)
    if model.unique_key:
        extra["unique_key"] = list(model.unique_key) if len(model.unique_key) > 1 else model.unique_key[0]
    node.update({
        "checksum": _checksum(project, model.path),
        "config": _config(materialized, model.tags, **extra),
        "columns": _columns([(c.name, c.description, c.tags) for c in model.columns]),
        "meta": {"sluice": {"fingerprint": planned.fingerprint, "physical": planned.physical,
                            "change": planned.change.value, "action": planned.action.value}},
        "relation_name": relation_name(invocation.database, schema, model.table),
        "raw_code": _raw(project, model.path), "language": "sql",
        "refs": [{"name": ids.name(d), "package": None, "version": None}
                 for d in model.depends_on if d in project.models or d in project.seeds],
        "sources": [list(s.split(".", 1)) for s in source_refs], "metrics": [],
        "depends_on": {"macros": [], "nodes": sorted(set(depends))},
        "compiled_path": None, "compiled": True,
        "compiled_code": compiled.sql(dialect=project.config.dialect, pretty=True),
        "extra_ctes_injected": True, "extra_ctes": [],
        "contract": {"enforced": False, "alias_types": True, "checksum": None},
        "access": "protected", "constraints": [], "version": None, "latest_version": None,
        "deprecation_date": None, "defer_relation": None,
        "primary_key": list(model.unique_key), "time_spine": None,
    })
    return node


def _seed_node(project: Project, seed: Seed, plan: Plan, ids: Ids, invocation: Invocation) -> dict[str, Any]:
    planned = plan.node(seed.name)
    schema = environment_schema(seed.schema, invocation.environment)
    node = _common(project, invocation, uid=ids.of(seed.name), name=seed.table, resource_type="seed",
                   schema=schema, path=seed.path,
                   fqn=_fqn(project, seed.path, project.config.seeds_path, seed.table))
    node.update({
        "checksum": _checksum(project, seed.path),
        "config": _config("seed", (), delimiter=",", quote_columns=None),
        "columns": _columns([(c, "", ()) for c in seed.columns]),
        "meta": {"sluice": {"fingerprint": planned.fingerprint, "physical": planned.physical}},
        "relation_name": relation_name(invocation.database, schema, seed.table),
        "raw_code": "", "root_path": str(project.root), "depends_on": {"macros": []},
    })
    return node


def _test_node(project: Project, test: DataTest, ids: Ids, invocation: Invocation,
               views: Mapping[str, tuple[str, str]]) -> dict[str, Any]:
    name = test_name(test)
    schema = environment_schema(project.config.default_schema, invocation.environment)
    parents = sorted({ids.of(d) for d in (test.model, test.to, *test.depends_on) if d})
    node = _common(project, invocation, uid=ids.test(test), name=name, resource_type="test",
                   schema=schema, path=test.file, fqn=[project.config.name, name])
    severity = str(getattr(test, "severity", "error")).upper()
    try:
        compiled = failing_rows_query(test, project, views).sql(dialect=project.config.dialect,
                                                               pretty=True)
    except (KeyError, ValueError):
        compiled = ""
    node.update({
        "config": _config("test", (), severity=severity, store_failures=None, where=None,
                          limit=None, fail_calc="count(*)", warn_if="!= 0", error_if="!= 0"),
        "columns": {}, "relation_name": None, "language": "sql", "refs": [], "sources": [],
        "metrics": [], "depends_on": {"macros": [], "nodes": parents},
        "compiled_path": None, "compiled": True, "compiled_code": compiled,
        "extra_ctes_injected": True, "extra_ctes": [], "contract": {"enforced": False,
                                                                   "alias_types": True,
                                                                   "checksum": None},
    })
    if test.kind == "singular":
        node.update({"checksum": _checksum(project, test.file), "raw_code": _raw(project, test.file)})
    else:
        model_ref = f"ref('{ids.name(test.model or '')}')"
        kwargs: dict[str, Any] = {"column_name": test.column,
                                  "model": f"{{{{ get_where_subquery({model_ref}) }}}}"}
        if test.kind == "accepted_values":
            kwargs["values"] = list(test.values)
        if test.kind == "relationships" and test.to:
            kwargs.update({"to": f"ref('{ids.name(test.to)}')", "field": test.field})
        node.update({
            "checksum": {"name": "none", "checksum": ""},
            "raw_code": f"{{{{ test_{test.kind}(**_dbt_generic_test_kwargs) }}}}",
            "test_metadata": {"name": test.kind, "kwargs": kwargs, "namespace": None},
            "column_name": test.column, "file_key_name": f"models.{ids.name(test.model or '')}",
            "attached_node": ids.of(test.model) if test.model else None,
        })
    return node


def _source_node(project: Project, source: Source, ids: Ids, invocation: Invocation) -> dict[str, Any]:
    node = _common(project, invocation, uid=ids.of(source.name), name=source.table,
                   resource_type="source", schema=source.schema, path=source.file,
                   fqn=[project.config.name, source.schema, source.table])
    del node["alias"], node["docs"], node["group"], node["build_path"], node["config_call_dict"]
    del node["unrendered_config_call_dict"], node["patch_path"]
    database = source.database or invocation.database
    node["database"] = database
    node.update({
        "source_name": source.schema, "source_description": "", "loader": "",
        "identifier": source.table, "quoting": {}, "loaded_at_field": None, "freshness": None,
        "external": None, "columns": _columns([(c, "", ()) for c in source.columns or ()]),
        "source_meta": {}, "config": {"enabled": True}, "unrendered_config": {},
        "relation_name": relation_name(database, source.schema, source.table),
    })
    return node


def _exposure_node(project: Project, exposure: Exposure, ids: Ids,
                   invocation: Invocation) -> dict[str, Any]:
    known = project.models.keys() | project.seeds.keys() | project.sources.keys()
    return {
        "name": exposure.name, "resource_type": "exposure", "package_name": project.config.name,
        "path": exposure.file, "original_file_path": exposure.file,
        "unique_id": ids.exposure(exposure), "fqn": [project.config.name, exposure.name],
        "type": EXPOSURE_TYPES.get(exposure.type, "application"),
        "owner": {"name": exposure.owner or None, "email": None},
        "description": exposure.description, "label": None, "maturity": None, "meta": {},
        "tags": [], "config": {"enabled": True}, "unrendered_config": {}, "url": exposure.url or None,
        "depends_on": {"macros": [], "nodes": sorted(ids.of(d) for d in exposure.depends_on
                                                     if d in known)},
        "refs": [], "sources": [], "metrics": [], "created_at": invocation.generated_at,
    }


# -- run_results.json -----------------------------------------------------------------------------------


def run_results(project: Project, result: RunResult, invocation: Invocation) -> dict[str, Any]:
    """Every node of the environment (built, failed, skipped, or reused: dbt's `no-op`) and every
    test that ran."""
    ids = Ids(project)
    env = invocation.environment
    views = {n.name: (environment_schema(n.name.split(".", 1)[0], env), n.name.split(".", 1)[1])
             for n in result.plan.nodes if n.action is not Action.DROP}
    out: list[dict[str, Any]] = []
    for node in result.plan.nodes:
        if node.action is Action.DROP:
            continue
        seconds = result.build.seconds.get(node.name, 0.0)
        if node.name in result.build.failed:
            status, message = "error", result.build.failed[node.name]
        elif node.name in result.build.skipped:
            status, message = "skipped", "an upstream model failed to build"
        elif node.action is Action.BUILD and not result.dry_run:
            status, message = "success", f"built {node.physical}"
        elif node.action is Action.BUILD:
            status, message = "skipped", "dry run: not built"
        else:
            status, message = "no-op", f"reused {node.physical} (zero copy)"
        timing = []
        end = result.build.finished.get(node.name)
        if end is not None:
            timing = [{"name": "execute", "started_at": _iso(end - seconds), "completed_at": _iso(end)}]
        schema, name = views[node.name]
        compiled = ""
        if node.name in project.models:
            compiled = physical_query(project.models[node.name].canonical, project.config.dialect,
                                      project.resolve, views).sql(dialect=project.config.dialect)
        out.append(_result(ids.of(node.name), status, message, timing, seconds, None, compiled,
                           relation_name(invocation.database, schema, name)))
    for test_result in result.tests.results:
        out.append(_result(ids.test(test_result.test), _test_status(test_result),
                           test_result.error or _test_message(test_result), [], test_result.seconds,
                           test_result.failures, test_result.sql, None))
    elapsed = sum(result.timings.values())
    metadata = invocation.metadata(RUN_RESULTS_SCHEMA)
    return {"metadata": metadata, "results": out, "elapsed_time": round(elapsed, 4),
            "args": {"which": "build", "target": env, "invocation_command": f"sluice plan {env}"}}


def _result(uid: str, status: str, message: str, timing: list[dict[str, str]], seconds: float,
            failures: int | None, compiled: str, relation: str | None) -> dict[str, Any]:
    return {"status": status, "timing": timing, "thread_id": "Thread-1",
            "execution_time": round(seconds, 4), "adapter_response": {}, "message": message,
            "failures": failures, "unique_id": uid, "compiled": True, "compiled_code": compiled,
            "relation_name": relation, "batch_results": None}


def _test_status(result: TestResult) -> str:
    if result.error is not None:
        return "error"
    if result.failures == 0:
        return "pass"
    return "warn" if str(getattr(result.test, "severity", "error")) == "warn" else "fail"


def _test_message(result: TestResult) -> str:
    if result.failures == 0:
        return ""
    return f"Got {result.failures} result{'s' if result.failures != 1 else ''}, configured to fail if != 0"


# -- catalog.json ---------------------------------------------------------------------------------------


def catalog(project: Project, plan: Plan, engine: Engine, invocation: Invocation) -> dict[str, Any]:
    """Columns and types of every model and seed as the environment's views show them, and of
    the sources that exist, read from the warehouse's catalog."""
    ids = Ids(project)
    env = invocation.environment
    nodes: dict[str, Any] = {}
    errors: list[str] = []
    for node in plan.nodes:
        if node.action is Action.DROP:
            continue
        schema, name = node.name.split(".", 1)
        relation = table(environment_schema(schema, env), name)
        columns = _column_types(engine, relation, errors)
        if columns:
            nodes[ids.of(node.name)] = _catalog_table(ids.of(node.name), relation, columns,
                                                      invocation, "VIEW", f"reads {node.physical}")
    sources: dict[str, Any] = {}
    for name in sorted(project.sources):
        schema, table_name = name.split(".", 1)
        relation = table(schema, table_name)
        columns = _column_types(engine, relation, [])
        if columns:
            sources[ids.of(name)] = _catalog_table(ids.of(name), relation, columns, invocation,
                                                   "BASE TABLE", None)
    return {"metadata": invocation.metadata(CATALOG_SCHEMA), "nodes": nodes, "sources": sources,
            "errors": errors or None}


def _column_types(engine: Engine, relation: exp.Table, errors: list[str]) -> list[tuple[str, str]]:
    try:
        return engine.column_types(relation)
    except WarehouseError as exc:
        errors.append(f"{relation.db}.{relation.name}: {exc.message}")
        return []


def _catalog_table(uid: str, relation: exp.Table, columns: Sequence[tuple[str, str]],
                   invocation: Invocation, kind: str, comment: str | None) -> dict[str, Any]:
    return {
        "metadata": {"type": kind, "schema": relation.db, "name": relation.name,
                     "database": invocation.database, "comment": comment, "owner": None},
        "columns": {name: {"type": kind_, "index": i, "name": name, "comment": None}
                    for i, (name, kind_) in enumerate(columns, start=1)},
        "stats": {"has_stats": {"id": "has_stats", "label": "Has Stats?", "value": False,
                                "include": False, "description": "Indicates whether there are "
                                                                 "statistics for this table"}},
        "unique_id": uid,
    }


# -- writing them -----------------------------------------------------------------------------------------


def database_name(engine: Engine) -> str:
    """The warehouse's current database (DuckDB: the file's catalog; PostgreSQL: the database)."""
    _, rows = engine.fetch(exp.select(exp.func("current_database")))
    return str(rows[0][0]) if rows and rows[0][0] is not None else ""


def write_artifacts(folder: Path, project: Project, result: RunResult, engine: Engine) -> list[Path]:
    """The three files of the run's environment in `folder` (created); their paths."""
    invocation = Invocation.now(result.plan.environment, database_name(engine), engine.dialect)
    folder.mkdir(parents=True, exist_ok=True)
    contents = {
        "manifest.json": manifest(project, result.plan, invocation),
        "run_results.json": run_results(project, result, invocation),
        "catalog.json": catalog(project, result.plan, engine, invocation),
    }
    paths = []
    for name, content in contents.items():
        path = folder / name
        temporary = path.with_suffix(".json.tmp")
        temporary.write_text(json.dumps(content, indent=2, default=str))
        temporary.replace(path)  # a reader never sees half a file
        paths.append(path)
    return paths


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
