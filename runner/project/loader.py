"""Load a data project from disk: `sluice.yml`, models with their YAML, seeds, sources and tests.

Loading checks everything a plan relies on (one query per model, every table it reads is known,
no cycles, no duplicate names) and reports each problem with the file and line it comes from.
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from runner.errors import ProjectError
from runner.limits import DEFAULT_LIMITS, Limits, recursion_refused
from runner.project.cache import ParseCache
from runner.project.config import IDENTIFIER, ProjectConfig, check_identifier, load_project_config
from runner.project.dbt import DbtOptions, is_dbt_project, load_dbt_project
from runner.project.files import inside, project_files
from runner.project.graph import project_dag
from runner.project.nodes import (
    COLUMN_TESTS,
    EXPOSURE_TYPES,
    MATERIALIZATIONS,
    Column,
    DataTest,
    Exposure,
    Model,
    Names,
    Project,
    Seed,
    Source,
    resolve_name,
)
from runner.project.parsing import ParsedQuery, TableRef
from runner.project.yamlfile import YamlMapping, load_yaml
from runner.safety import Allowlist, Refusal, check_body, load_allowlist, refuse_unsafe


def load_project(root: Path | str, cache_dir: Path | None = None,
                 limits: Limits = DEFAULT_LIMITS, sql_allowlist: Iterable[str] = (),
                 dbt: DbtOptions | None = None) -> Project:
    """Read and check the whole project under `root` (a dbt project when it has dbt_project.yml).
    Files are read only inside `root`, within `limits`; caches are used only from a `cache_dir`
    outside the project (a cache a repository carries would let it say what its SQL parses to).
    `sql_allowlist`: the functions the server's policy file adds to the dialect's allowlist
    (never the repository's)."""
    root = Path(root).resolve()
    if cache_dir is not None and cache_dir.resolve().is_relative_to(root):
        cache_dir = None
    if is_dbt_project(root):  # a dbt project: dbt-core compiles it (runner/project/dbt)
        return load_dbt_project(root, cache_dir, dbt, limits=limits, sql_allowlist=sql_allowlist)
    config = load_project_config(root, limits)
    allow = load_allowlist(config.dialect, sql_allowlist)
    texts: dict[str, str] = {}
    cache = ParseCache(cache_dir / "parse-cache.json" if cache_dir else None)
    models_dir = root / config.models_path

    parsed: dict[str, tuple[Model, ParsedQuery]] = {}
    for path in _files(root, models_dir, (".sql",)):
        rel = _rel(root, path)
        schema, table = _model_name(models_dir, path, config, rel)
        name = f"{schema}.{table}"
        if name in parsed:
            raise ProjectError(
                f"duplicate model name {name!r}: also defined in {parsed[name][0].path}", file=rel
            )
        sql = _read(root, path, rel, limits)
        with recursion_refused(limits, rel):
            query = cache.parse(sql, config.dialect, rel)
        model = Model(name=name, schema=schema, table=table, path=rel, canonical=query.canonical,
                      depends_on=(), refs=query.refs)
        parsed[name] = (model, query)
        texts[name] = sql

    seeds = _load_seeds(root, config, limits)
    for name, seed in seeds.items():
        if name in parsed:
            raise ProjectError(
                f"seed {name!r} has the same name as the model in {parsed[name][0].path}",
                file=seed.path,
            )

    sources: dict[str, Source] = {}
    entries: dict[str, YamlMapping] = {}
    yaml_files = [p for p in _files(root, models_dir, (".yml", ".yaml"))]
    docs = [(path, load_yaml(path, _rel(root, path), limits)) for path in yaml_files]
    for _, doc in docs:
        doc.check_keys({"version", "models", "sources", "seeds", "exposures"}, "a models YAML file")
        for source in _load_sources(doc, config):
            if source.name in sources or source.name in parsed or source.name in seeds:
                raise doc.error("sources", f"source table {source.name!r} is declared twice "
                                "or has the name of a model or seed")
            sources[source.name] = source

    names = Names.of(dict.fromkeys(parsed), seeds, sources)
    for _, doc in docs:
        for entry in doc.mappings("models"):
            entry_name = entry.get_str("name")
            if not entry_name:
                raise entry.error(None, "a models entry needs a 'name'")
            parts = tuple(entry_name.lower().split("."))
            target = resolve_name(parts, names)
            candidates = [n for n in names.short.get(parts[-1], []) if n in parsed]
            if target is None and len(parts) == 1 and len(candidates) > 1:
                raise entry.error("name", f"models entry {entry_name!r} is ambiguous: write one of "
                                  f"{', '.join(sorted(candidates))}")
            if target is None or target not in parsed:
                raise entry.error("name", f"models entry {entry_name!r} matches no model file "
                                  f"under {config.models_path}/")
            if target in entries:
                raise entry.error("name", f"model {target!r} is described twice (also at "
                                  f"{entries[target].file}:{entries[target].line})")
            entries[target] = entry

    models: dict[str, Model] = {}
    tests: list[DataTest] = []
    for name, (model, query) in parsed.items():
        deps = tuple(sorted({_resolve_ref(ref, names, model.path) for ref in query.refs}))
        refuse_unsafe(checked(cache, texts[name], model.canonical, config.dialect, names, model.path, allow))
        meta = entries.get(name)
        materialized, unique_key, description, tags, columns, column_tests = (
            _model_meta(meta, name, names) if meta is not None else ("table", (), "", (), (), [])
        )
        models[name] = Model(
            name=name, schema=model.schema, table=model.table, path=model.path,
            canonical=model.canonical, depends_on=tuple(d for d in deps if d not in sources),
            refs=model.refs, materialized=materialized, unique_key=unique_key,
            description=description, tags=tags, columns=columns,
        )
        tests.extend(column_tests)

    tests.extend(_load_singular_tests(root, config, cache, names, limits, allow))
    cache.save()
    exposures = [exposure for _, doc in docs for exposure in _load_exposures(doc, names)]
    seen: set[str] = set()
    for exposure in exposures:
        if exposure.name in seen:
            raise ProjectError(f"exposure {exposure.name!r} is declared twice", file=exposure.file,
                               line=exposure.line)
        seen.add(exposure.name)

    dag = project_dag(models, seeds, names)
    return Project(root=root, config=config, models=models, seeds=seeds, sources=sources,
                   tests=tuple(tests), dag=dag, names=names, exposures=tuple(exposures),
                   allowlist=allow)


def _files(root: Path, directory: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    return project_files(root, directory, suffixes)


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def _read(root: Path, path: Path, rel: str, limits: Limits) -> str:
    """A model or test file's SQL: inside the checkout, within the size and nesting limits."""
    try:
        resolved = inside(root, path, rel)
        limits.check_size(resolved.stat().st_size, "model", rel)
        sql = resolved.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read file: {exc}", file=rel) from None
    limits.check_sql_nesting(sql, rel)
    return sql


def _model_name(models_dir: Path, path: Path, config: ProjectConfig, rel: str) -> tuple[str, str]:
    parts = path.relative_to(models_dir).parts
    schema = parts[0].lower() if len(parts) > 1 else config.default_schema
    table = path.stem.lower()
    check_identifier(schema, "schema (the folder under models/)", file=rel)
    check_identifier(table, "model name (the file name)", file=rel, table=True)
    return schema, table


def _resolve_ref(ref: TableRef, names: Names, file: str) -> str:
    target = resolve_name(ref.parts, names)
    if target is not None:
        return target
    if len(ref.parts) == 1 and len(names.short.get(ref.parts[0], [])) > 1:
        options = ", ".join(sorted(names.short[ref.parts[0]]))
        raise ProjectError(f"table {ref.text!r} is ambiguous: write one of {options}",
                           file=file, line=ref.line)
    raise ProjectError(
        f"table {ref.text!r} is not a model, a seed or a declared source; declare it under "
        "'sources:' in a YAML file or add the model",
        file=file, line=ref.line,
    )


def _load_seeds(root: Path, config: ProjectConfig, limits: Limits) -> dict[str, Seed]:
    seeds: dict[str, Seed] = {}
    for path in _files(root, root / config.seeds_path, (".csv",)):
        rel = _rel(root, path)
        table = check_identifier(path.stem.lower(), "seed name (the file name)", file=rel, table=True)
        resolved = inside(root, path, rel)
        try:
            limits.check_size(resolved.stat().st_size, "seed", rel)
            data = resolved.read_bytes()
        except OSError as exc:
            raise ProjectError(f"cannot read file: {exc}", file=rel) from None
        try:
            header = next(csv.reader(data.decode("utf-8").splitlines()), None)
        except UnicodeDecodeError:
            raise ProjectError("seed files must be UTF-8 CSV", file=rel) from None
        if not header:
            raise ProjectError("the seed has no header row", file=rel, line=1)
        columns = tuple(h.strip().lower() for h in header)
        if len(set(columns)) != len(columns):
            raise ProjectError("the seed's header repeats a column name", file=rel, line=1)
        name = f"{config.seed_schema}.{table}"
        if name in seeds:
            raise ProjectError(f"duplicate seed {name!r}", file=rel)
        seeds[name] = Seed(name=name, schema=config.seed_schema, table=table, path=rel,
                           content_hash=hashlib.sha256(data).hexdigest(), columns=columns)
    return seeds


def _load_sources(doc: YamlMapping, config: ProjectConfig) -> Iterator[Source]:
    for entry in doc.mappings("sources"):
        entry.check_keys({"name", "schema", "database", "description", "tables", "loader", "meta"},
                         "a sources entry")
        source_name = entry.get_str("name")
        if not source_name:
            raise entry.error(None, "a sources entry needs a 'name'")
        schema = (entry.get_str("schema") or source_name).lower()
        check_identifier(schema, "source schema", entry, "schema" if "schema" in entry else "name")
        database = entry.get_str("database")
        if database is not None and not IDENTIFIER.match(database.lower()):
            raise entry.error("database", f"source database {database!r} is not a valid name: use "
                                          "letters, digits and underscores")
        database = database.lower() if database else None
        for table in entry.mappings("tables"):
            table.check_keys({"name", "description", "columns", "identifier", "meta"},
                             "a source table")
            table_name = (table.get_str("name") or "").lower()
            if not table_name:
                raise table.error(None, "a source table needs a 'name'")
            check_identifier(table_name, "source table", table, "name", table=True)
            columns = None
            if "columns" in table:
                columns = tuple((c.get_str("name") or "").lower() for c in table.mappings("columns"))
            yield Source(name=f"{schema}.{table_name}", schema=schema, table=table_name,
                         columns=columns, file=doc.file, database=database)


def _load_exposures(doc: YamlMapping, names: Names) -> Iterator[Exposure]:
    for entry in doc.mappings("exposures"):
        entry.check_keys({"name", "type", "owner", "url", "description", "depends_on", "label",
                          "maturity", "meta", "tags"}, "an exposures entry")
        name = entry.get_str("name") or ""
        if not name:
            raise entry.error(None, "an exposure needs a 'name'")
        kind = (entry.get_str("type") or "").lower()
        if kind not in EXPOSURE_TYPES:
            raise entry.error("type", f"exposure {name!r}: type must be one of {', '.join(EXPOSURE_TYPES)}")
        owner = entry.get("owner")
        if isinstance(owner, YamlMapping):
            owner_text = " ".join(str(owner.get(k)) for k in ("name", "email") if owner.get(k))
        else:
            owner_text = str(owner or "")
        depends: list[str] = []
        for item in entry.get_list("depends_on"):
            text = str(item).strip()
            ref = re.fullmatch(r"ref\(\s*['\"]([\w.]+)['\"]\s*\)", text)
            target = resolve_name(tuple((ref.group(1) if ref else text).lower().split(".")), names)
            if target is None:
                raise entry.error("depends_on", f"exposure {name!r} depends on {text!r}, which is not "
                                  "a model, a seed or a declared source")
            depends.append(target)
        if not depends:
            raise entry.error(None, f"exposure {name!r} needs 'depends_on': the models it reads")
        yield Exposure(name=name, type=kind, depends_on=tuple(depends), owner=owner_text,
                       url=entry.get_str("url") or "", description=entry.get_str("description") or "",
                       file=doc.file, line=entry.line)


def _model_meta(
    entry: YamlMapping, name: str, names: Names
) -> tuple[str, tuple[str, ...], str, tuple[str, ...], tuple[Column, ...], list[DataTest]]:
    entry.check_keys({"name", "description", "materialized", "unique_key", "tags", "columns",
                      "config", "tests", "data_tests", "meta"}, f"model {name!r}")
    config = entry.get_mapping("config")
    config.check_keys({"materialized", "unique_key", "tags"}, f"the config of model {name!r}")
    materialized = (entry.get_str("materialized") or config.get_str("materialized") or "table")
    if materialized not in MATERIALIZATIONS:
        where = entry if "materialized" in entry else config
        raise where.error("materialized", f"materialized {materialized!r} is not supported; use "
                          f"one of: {', '.join(MATERIALIZATIONS)}")
    raw_key = entry.get("unique_key", config.get("unique_key"))
    if raw_key is None:
        unique_key: tuple[str, ...] = ()
    elif isinstance(raw_key, str):
        unique_key = tuple(k.strip().lower() for k in raw_key.split(","))
    elif isinstance(raw_key, list) and all(isinstance(k, str) for k in raw_key):
        unique_key = tuple(k.lower() for k in raw_key)
    else:
        raise entry.error("unique_key", "'unique_key' must be a column name or a list of them")
    tags = tuple(str(t) for t in entry.get_list("tags") + config.get_list("tags"))
    columns: list[Column] = []
    tests: list[DataTest] = []
    for col in entry.mappings("columns"):
        col.check_keys({"name", "description", "tags", "tests", "data_tests", "meta", "data_type"},
                       f"a column of model {name!r}")
        col_name = (col.get_str("name") or "").lower()
        if not col_name:
            raise col.error(None, f"a column of model {name!r} needs a 'name'")
        columns.append(Column(col_name, col.get_str("description") or "",
                              tuple(str(t) for t in col.get_list("tags"))))
        for key in ("tests", "data_tests"):
            for item in col.get_list(key):
                tests.append(_column_test(item, col, key, name, col_name, names))
    if entry.get_list("tests") or entry.get_list("data_tests"):
        key = "tests" if "tests" in entry else "data_tests"
        raise entry.error(key, "model-level tests are not supported; put column tests under "
                          "'columns' or write a singular test in tests/")
    return (materialized, unique_key, entry.get_str("description") or "", tags, tuple(columns),
            tests)


def _column_test(item: Any, col: YamlMapping, key: str, model: str, column: str,
                 names: Names) -> DataTest:
    line = col.line_of(key)
    if isinstance(item, str):
        kind, params = item, YamlMapping({}, {}, col.file, line)
    elif isinstance(item, YamlMapping) and len(item) == 1:
        kind = next(iter(item))
        line = item.line_of(kind)
        if not isinstance(item[kind], YamlMapping):
            raise item.error(kind, f"test {kind!r} needs a mapping of arguments")
        params = item[kind]
    else:
        raise col.error(key, f"a test of {model}.{column} must be a name or a one-key mapping")
    if kind not in COLUMN_TESTS:
        raise ProjectError(f"unknown test {kind!r} on {model}.{column}; built-in tests are: "
                           f"{', '.join(COLUMN_TESTS)}", file=col.file, line=line)
    if kind == "accepted_values":
        params.check_keys({"values", "quote"}, "accepted_values")
        values = params.get_list("values")
        if not values:
            raise params.error(None, f"accepted_values on {model}.{column} needs 'values'")
        return DataTest(kind, model, column, col.file, line, values=tuple(values))
    if kind == "relationships":
        params.check_keys({"to", "field"}, "relationships")
        to_text = params.get_str("to") or ""
        to = resolve_name(tuple(to_text.lower().split(".")), names) if to_text else None
        field_name = (params.get_str("field") or "").lower()
        if to_text and to is None:
            raise params.error("to", f"relationships on {model}.{column}: {to_text!r} is not a model, "
                               "a seed or a declared source")
        if to is None or not field_name:
            raise params.error("to" if "to" in params else None,
                               f"relationships on {model}.{column} needs 'to' (a model, seed or "
                               "source) and 'field'")
        return DataTest(kind, model, column, col.file, line, to=to, field=field_name,
                        depends_on=(to,))
    params.check_keys(set(), kind)
    return DataTest(kind, model, column, col.file, line)


def checked(cache: ParseCache, text: str, canonical: str, dialect: str, names: Names, file: str,
            allow: Allowlist) -> list[Refusal]:
    """`check_body`'s refusals, from the cache when the same body passed against the same
    allowlist and names before (a warm load checks nothing it checked already)."""
    return cache.verdict(("body", dialect, allow.fingerprint, names.fingerprint, text, canonical),
                         lambda: check_body(text, canonical, dialect, names, file, allow))


def _load_singular_tests(root: Path, config: ProjectConfig, cache: ParseCache,
                         names: Names, limits: Limits, allow: Allowlist) -> list[DataTest]:
    tests = []
    for path in _files(root, root / config.tests_path, (".sql",)):
        rel = _rel(root, path)
        sql = _read(root, path, rel, limits)
        with recursion_refused(limits, rel):
            query = cache.parse(sql, config.dialect, rel)
        deps = tuple(sorted({_resolve_ref(ref, names, rel) for ref in query.refs}))
        refuse_unsafe(checked(cache, sql, query.canonical, config.dialect, names, rel, allow))
        tests.append(DataTest("singular", None, None, rel, 1, sql=query.canonical,
                              depends_on=deps))
    return tests
