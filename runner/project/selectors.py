"""dbt's node selection grammar over a project's models and seeds: a pure function from selector
text to the set of node names it selects.

    orders  marts.orders  stg_*          by name (the table name, or schema.name; globs allowed)
    +orders  orders+  +orders+  2+orders  orders+1  @orders     with ancestors / descendants
    tag:pii  path:models/marts  config.materialized:view  source:raw.events
    state:modified  state:new                                   changed against the environment

Terms separated by spaces (or given as several values) are a union; terms joined by commas an
intersection; `exclude` takes its selection away. `state:` needs the names of the models that
changed against the environment, which the caller computes (`state_changes`).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from runner.errors import SluiceError
from runner.project.nodes import Model, Project
from runner.project.parsing import TableRef

METHODS = ("name", "fqn", "tag", "path", "file", "config", "source", "state", "resource_type")
STATES = ("modified", "new")

_TERM = re.compile(r"^(?P<at>@)?(?:(?P<up_depth>\d*)(?P<up>\+))?(?P<body>[^+@]+?)"
                   r"(?:(?P<down>\+)(?P<down_depth>\d*))?$")


@dataclass(frozen=True)
class StateChanges:
    """The nodes whose definition differs from the environment's: edited, and newly added."""

    modified: frozenset[str]
    new: frozenset[str]


@dataclass(frozen=True)
class Term:
    """One selector: a method and value with graph operators (`None` depth: all the way)."""

    text: str
    method: str
    value: str
    ancestors: bool = False
    ancestor_depth: int | None = None
    descendants: bool = False
    descendant_depth: int | None = None
    at: bool = False


def parse_term(text: str) -> Term:
    match = _TERM.match(text)
    if match is None:
        raise SluiceError(f"selector {text!r} is not valid: write NAME, +NAME, NAME+, N+NAME, NAME+N, "
                          "@NAME or METHOD:VALUE (tag:, path:, config.materialized:, state:modified)")
    body = match["body"]
    method, sep, value = body.partition(":")
    if not sep:
        method, value = "name", body
    base_method = method.split(".", 1)[0]
    if base_method not in METHODS or (method.count(".") and base_method != "config") \
            or (base_method == "config" and "." not in method):
        raise SluiceError(f"selector {text!r}: unknown method {method!r} (known: name, tag, path, "
                          "config.KEY, source, state, resource_type)")
    if not value:
        raise SluiceError(f"selector {text!r}: {method}: needs a value")
    if base_method == "state" and value not in STATES:
        raise SluiceError(f"selector {text!r}: state:{value} is not known (use state:modified or "
                          "state:new)")
    if match["at"] and (match["up"] or match["down"]):
        raise SluiceError(f"selector {text!r}: @ cannot be combined with +")
    return Term(text=text, method=method, value=value,
                ancestors=bool(match["up"]), ancestor_depth=_depth(match["up_depth"]),
                descendants=bool(match["down"]), descendant_depth=_depth(match["down_depth"]),
                at=bool(match["at"]))


def _depth(text: str | None) -> int | None:
    return int(text) if text else None


def split(values: Iterable[str]) -> list[list[Term]]:
    """Several values and space-separated words: a union of intersections of terms."""
    out: list[list[Term]] = []
    for value in values:
        for word in value.split():
            out.append([parse_term(part) for part in word.split(",") if part] or [])
    return [group for group in out if group]


def uses_state(values: Iterable[str]) -> bool:
    return any(term.method == "state" for group in split(values) for term in group)


def select(project: Project, values: Sequence[str], exclude: Sequence[str] = (),
           state: StateChanges | Callable[[], StateChanges] | None = None) -> frozenset[str]:
    """Node names (models and seeds) that `values` select, minus those `exclude` selects.

    No `values`: every node. `state` is only asked for when a selector uses `state:`."""
    resolved: list[StateChanges] = []

    def changes() -> StateChanges:
        if not resolved:
            if state is None:
                raise SluiceError("state: selectors need an environment to compare with")
            resolved.append(state() if callable(state) else state)
        return resolved[0]

    everything = frozenset(project.models) | frozenset(project.seeds)
    chosen = _union(project, split(values), changes) if values else everything
    if exclude:
        chosen -= _union(project, split(exclude), changes)
    return chosen


def _union(project: Project, groups: list[list[Term]],
           changes: Callable[[], StateChanges]) -> frozenset[str]:
    out: set[str] = set()
    for group in groups:
        found = _term(project, group[0], changes)
        for term in group[1:]:
            found &= _term(project, term, changes)
        out |= found
    return frozenset(out)


def _term(project: Project, term: Term, changes: Callable[[], StateChanges]) -> set[str]:
    matched = _match(project, term, changes)
    out = set(matched)
    if term.at:
        below = _walk(project.dag.children, matched, None)
        out |= below | _walk(project.dag.parents, matched | below, None)
        return out & _nodes(project)
    if term.ancestors:
        out |= _walk(project.dag.parents, matched, term.ancestor_depth)
    if term.descendants:
        out |= _walk(project.dag.children, matched, term.descendant_depth)
    return out & _nodes(project)


def _nodes(project: Project) -> set[str]:
    return set(project.models) | set(project.seeds)


def _walk(graph: Mapping[str, tuple[str, ...]], start: Iterable[str], depth: int | None) -> set[str]:
    seen: set[str] = set()
    frontier = set(start)
    level = 0
    while frontier and (depth is None or level < depth):
        level += 1
        nxt = {n for node in frontier for n in graph.get(node, ()) if n not in seen}
        seen |= nxt
        frontier = nxt
    return seen


def _match(project: Project, term: Term, changes: Callable[[], StateChanges]) -> set[str]:
    method, value = term.method, term.value.lower()
    if method in ("name", "fqn"):
        return {n for n in _nodes(project) if _name_matches(n, value)}
    if method == "tag":
        return {n for n, m in project.models.items() if any(fnmatch.fnmatchcase(t.lower(), value)
                                                            for t in m.tags)}
    if method in ("path", "file"):
        return {n for n in _nodes(project) if _path_matches(project.node(n).path, term.value,
                                                            whole_file=method == "file")}
    if method == "source":
        # The models that read a matching source (sources themselves are not built).
        sources = {s for s in project.sources if _name_matches(s, value)}
        return {n for n, m in project.models.items() if sources & set(_reads(project, m.refs))}
    if method == "resource_type":
        if value == "model":
            return set(project.models)
        if value == "seed":
            return set(project.seeds)
        raise SluiceError(f"selector {term.text!r}: resource_type:{value} is not known (model, seed)")
    if method == "state":
        found = changes()
        return set(found.modified | found.new) if value == "modified" else set(found.new)
    key = method.split(".", 1)[1]
    return {n for n, m in project.models.items() if _config(m, key) == value} | (
        set(project.seeds) if key == "materialized" and value == "seed" else set())


def _reads(project: Project, refs: Iterable[TableRef]) -> Iterable[str]:
    for ref in refs:
        target = project.resolve(ref.parts)
        if target is not None:
            yield target


def _config(model: Model, key: str) -> str | None:
    if key == "materialized":  # as the project declares it (dbt's incremental is built as a table)
        return str(dict(model.config).get("materialized", model.materialized)).lower()
    if key == "unique_key":
        return ",".join(model.unique_key).lower() or None
    for k, v in model.config:
        if k == key:
            return str(v).lower()
    return None


def _name_matches(name: str, pattern: str) -> bool:
    table = name.split(".", 1)[1] if "." in name else name
    return fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(table, pattern)


def _path_matches(path: str, pattern: str, whole_file: bool) -> bool:
    path = path.replace("\\", "/")
    pattern = pattern.replace("\\", "/").rstrip("/").removeprefix("./")
    if whole_file:
        return path == pattern or path.rsplit("/", 1)[-1] == pattern
    return path == pattern or path.startswith(pattern + "/") or fnmatch.fnmatchcase(path, pattern)
