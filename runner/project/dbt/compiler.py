"""Compile a dbt project with dbt-core in a child process without secrets, and cache the result.

The cache key hashes every file of the project (packages included), the generated profile, the
vars and the environment variables the project may read, so an unchanged project is never
compiled again; when something changed, dbt's partial parsing (its state kept in the cache
folder, never in the repository) makes the new compile cheaper than a full one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.engines.base import DBT_NO_CONNECTION
from runner.errors import ProjectError
from runner.project.dbt.profile import profile_yaml
from runner.project.yamlfile import YamlMapping, load_yaml

DBT_PROJECT_FILE = "dbt_project.yml"
PACKAGES_FILES = ("packages.yml", "dependencies.yml")
# Folders dbt writes into or that are not the project's: never part of the key.
_SKIPPED = {".git", ".sluice", "target", "logs", "__pycache__", ".venv", "node_modules"}
CACHE_VERSION = 1
COMPILE_TIMEOUT = 900  # seconds: a full parse of a large project on a busy machine


@dataclass(frozen=True)
class DbtOptions:
    """What the server (or the laptop) decides about compiling: never the repository.

    `env` holds the only environment variables `env_var()` can read (the server config's
    allowlist, with their values); `warehouse_url`, when given, is the restricted read-only
    connection introspective macros (`run_query`) use; without one they see an empty database.
    """

    env: Mapping[str, str] = field(default_factory=dict)
    warehouse_url: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)


def compile_project(root: Path, dialect: str, schema: str, options: DbtOptions,
                    cache_dir: Path | None) -> dict[str, Any]:
    """dbt's manifest for the project (the parts Sluice reads), from the cache when nothing
    changed."""
    project_file = load_yaml(root / DBT_PROJECT_FILE, DBT_PROJECT_FILE)
    profile_name = project_file.get_str("profile") or project_file.get_str("name") or "default"
    profile = profile_yaml(profile_name, dialect, schema, options.warehouse_url)
    _check_local_packages(root)
    key = _key(root, profile, options)
    cache = (cache_dir / "dbt") if cache_dir is not None else None
    entry = cache / f"manifest-{key}.json" if cache is not None else None
    if entry is not None and entry.is_file():
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(entry.read_text())
            if isinstance(cached, dict) and cached.get("version") == CACHE_VERSION:
                return cached
    # dbt's own state (partial parsing) lives per project folder in the cache, not in the checkout.
    work = (cache / ("work-" + hashlib.sha256(str(root).encode()).hexdigest()[:16])
            if cache is not None else None)
    manifest = _run_dbt(root, profile, options, work)
    slim = {"version": CACHE_VERSION, **slim_manifest(manifest)}
    if entry is not None:
        # The key is taken again: `dbt deps` may just have written dbt_packages/.
        entry = entry.with_name(f"manifest-{_key(root, profile, options)}.json")
        _write_atomically(entry, json.dumps(slim))
    return slim


def _key(root: Path, profile: str, options: DbtOptions) -> str:
    digest = hashlib.sha256()
    digest.update(json.dumps({"v": CACHE_VERSION, "profile": profile, "env": sorted(options.env.items()),
                              "vars": options.vars, "dbt": _dbt_version()}, sort_keys=True,
                             default=str).encode())
    for path in _project_files(root):
        rel = path.relative_to(root).as_posix()
        digest.update(rel.encode() + b"\0")
        if path.is_symlink():
            digest.update(b"link:" + os.readlink(path).encode())
        else:
            with contextlib.suppress(OSError):
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:32]


def _project_files(root: Path) -> Iterator[Path]:
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED)
        base = Path(folder)
        for name in sorted(files):
            yield base / name
        for name in dirs:
            if (base / name).is_symlink():
                yield base / name


def _dbt_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbt-core")
    except PackageNotFoundError:
        return "none"


def _packages(root: Path) -> tuple[str, YamlMapping] | None:
    for name in PACKAGES_FILES:
        if (root / name).is_file():
            return name, load_yaml(root / name, name)
    return None


def _check_local_packages(root: Path) -> None:
    """A local package must sit inside the checkout: `local: ../..` would read the server's files."""
    found = _packages(root)
    if found is None:
        return
    _, doc = found
    for entry in doc.mappings("packages"):
        local = entry.get("local")
        if isinstance(local, str):
            target = (root / local).resolve()
            if not target.is_relative_to(root.resolve()):
                raise entry.error("local", f"local package {local!r} is outside the repository")
            if not (target / DBT_PROJECT_FILE).is_file():
                raise entry.error("local", f"local package {local!r} has no {DBT_PROJECT_FILE}")


def _needs_deps(root: Path) -> bool:
    found = _packages(root)
    if found is None:
        return False
    _, doc = found
    wanted = doc.mappings("packages")
    installed = root / "dbt_packages"
    return bool(wanted) and not (installed.is_dir() and any(installed.iterdir()))


def _package_names(root: Path) -> list[tuple[str, str, int | None]]:
    found = _packages(root)
    if found is None:
        return []
    name, doc = found
    out: list[tuple[str, str, int | None]] = []
    for entry in doc.mappings("packages"):
        for kind in ("package", "git", "local", "tarball"):
            if kind in entry:
                out.append((name, str(entry[kind]), entry.line))
                break
    return out


def _run_dbt(root: Path, profile: str, options: DbtOptions, work: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="sluice-dbt-") as scratch:
        base = work or Path(scratch) / "work"
        base.mkdir(parents=True, exist_ok=True, mode=0o700)
        profiles = Path(scratch) / "profiles"
        profiles.mkdir(mode=0o700)
        (profiles / "profiles.yml").write_text(profile)
        home = Path(scratch) / "home"
        home.mkdir()
        request = {
            "project_dir": str(root), "profiles_dir": str(profiles), "target_path": str(base / "target"),
            "log_path": str(base / "logs"), "deps": _needs_deps(root), "vars": dict(options.vars),
        }
        (Path(scratch) / "request.json").write_text(json.dumps(request))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "runner.project.dbt.child", str(Path(scratch) / "request.json")],
                env=child_environment(options.env, home), cwd=root, capture_output=True, text=True,
                timeout=COMPILE_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise ProjectError(f"dbt took more than {COMPILE_TIMEOUT} s to compile the project",
                               file=DBT_PROJECT_FILE) from None
        outcome = _last_json(done.stdout)
        if outcome is None:
            tail = " ".join((done.stderr or done.stdout).strip().splitlines()[-1:]) or "no output"
            raise ProjectError(f"dbt could not compile the project: {tail[:300]}", file=DBT_PROJECT_FILE)
        if not outcome.get("ok"):
            raise _dbt_error(root, str(outcome.get("step")), str(outcome.get("error") or ""))
        manifest_path = base / "target" / "manifest.json"
        try:
            manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        except (OSError, ValueError) as exc:
            raise ProjectError(f"dbt wrote no readable manifest: {exc}", file=DBT_PROJECT_FILE) from None
        return manifest


def child_environment(allowed: Mapping[str, str], home: Path) -> dict[str, str]:
    """The child's whole environment: what it needs to run, and the allowlisted variables. Nothing
    of the parent's is inherited, so no token, secret or password can leak into `env_var()`."""
    env = {"PATH": os.defpath, "HOME": str(home), "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
           "DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1",
           "PYTHONDONTWRITEBYTECODE": "1"}
    # The child imports this package: keep the parent's module path (not a secret).
    paths = [p for p in sys.path if p]
    env["PYTHONPATH"] = os.pathsep.join(paths)
    for name, value in allowed.items():
        if name not in env:
            env[name] = value
    return env


def _last_json(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    return value
    return None


def _dbt_error(root: Path, step: str, message: str) -> ProjectError:
    if step == "deps":
        packages = _package_names(root)
        remote = [p for p in packages if not _is_local(root, p)]
        fallback: list[tuple[str, str, int | None]] = [(PACKAGES_FILES[0], "?", None)]
        file, name, line = (remote or packages or fallback)[0]
        reason = message.split(":", 1)[0][:120]  # dbt's first clause; the rest is a retry trace
        return ProjectError(f"package {name!r} could not be installed by `dbt deps` (no network?): "
                            f"{reason}", file=file, line=line)
    if DBT_NO_CONNECTION in message:
        return ProjectError("the project asks the warehouse a question while compiling (is_incremental(), "
                            "run_query): a PostgreSQL dbt project needs the server to give a read-only "
                            "connection for it", file=DBT_PROJECT_FILE)
    return ProjectError(f"dbt could not compile the project: {message[:400]}", file=DBT_PROJECT_FILE)


def _is_local(root: Path, package: tuple[str, str, int | None]) -> bool:
    _, name, _ = package
    return (root / name).is_dir()


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise


_NODE_KEYS = ("unique_id", "resource_type", "name", "package_name", "database", "schema", "alias",
              "identifier", "relation_name", "compiled_code", "original_file_path", "description",
              "attached_node", "column_name", "test_metadata", "tags", "patch_path")
_CONFIG_KEYS = ("materialized", "severity", "warn_if", "error_if", "limit", "fail_calc", "where",
                "tags", "unique_key", "column_types", "enabled", "incremental_strategy",
                "pre-hook", "post-hook", "contract")


def slim_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """The parts of dbt's manifest Sluice maps: nodes, sources, exposures (a 300-model manifest
    is megabytes of docs and macros Sluice never reads)."""
    def node(raw: dict[str, Any]) -> dict[str, Any]:
        slim = {k: raw.get(k) for k in _NODE_KEYS}
        slim["config"] = {k: (raw.get("config") or {}).get(k) for k in _CONFIG_KEYS}
        slim["depends_on"] = list((raw.get("depends_on") or {}).get("nodes") or [])
        slim["columns"] = [{"name": c.get("name"), "description": c.get("description") or "",
                            "tags": c.get("tags") or []}
                           for c in (raw.get("columns") or {}).values()]
        return slim

    return {
        "project_name": (manifest.get("metadata") or {}).get("project_name"),
        "nodes": [node(n) for n in manifest.get("nodes", {}).values()],
        "sources": [node(n) for n in manifest.get("sources", {}).values()],
        "exposures": [{"name": e.get("name"), "type": e.get("type"),
                       "depends_on": list((e.get("depends_on") or {}).get("nodes") or []),
                       "owner": e.get("owner") or {}, "url": e.get("url") or "",
                       "description": e.get("description") or "",
                       "original_file_path": e.get("original_file_path")}
                      for e in manifest.get("exposures", {}).values()],
    }
