"""Read YAML with ruamel.yaml into plain values that remember the line of every mapping key.

Errors about a key must name the file and the line, so mappings come back as `YamlMapping` objects: a
dict plus the line each key sits on. Everything else is plain `list`, `str`, `int`, … .
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, ScalarEvent

from runner.errors import ProjectError
from runner.limits import DEFAULT_LIMITS, Limits, recursion_refused


class YamlMapping(dict[str, Any]):
    """A YAML mapping with the 1-based line of each key and of the mapping itself."""

    def __init__(self, items: dict[str, Any], lines: dict[str, int], file: str, line: int):
        super().__init__(items)
        self.lines = lines
        self.file = file
        self.line = line

    def line_of(self, key: str) -> int:
        return self.lines.get(key, self.line)

    def error(self, key: str | None, message: str) -> ProjectError:
        line = self.line if key is None else self.line_of(key)
        return ProjectError(message, file=self.file, line=line)

    def check_keys(self, allowed: set[str], what: str) -> None:
        for key in self:
            if key not in allowed:
                raise self.error(
                    key, f"unknown key {key!r} in {what}; expected one of: {', '.join(sorted(allowed))}"
                )

    def get_str(self, key: str, default: str | None = None) -> str | None:
        value = self.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"{key!r} must be a string, got {type(value).__name__}")
        return value

    def get_mapping(self, key: str) -> YamlMapping:
        value = self.get(key)
        if value is None:
            return YamlMapping({}, {}, self.file, self.line_of(key))
        if not isinstance(value, YamlMapping):
            raise self.error(key, f"{key!r} must be a mapping")
        return value

    def get_list(self, key: str) -> list[Any]:
        value = self.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.error(key, f"{key!r} must be a list")
        return value

    def mappings(self, key: str) -> Iterator[YamlMapping]:
        for item in self.get_list(key):
            if not isinstance(item, YamlMapping):
                raise self.error(key, f"every entry of {key!r} must be a mapping")
            yield item


def _convert(node: Any, file: str) -> Any:
    if isinstance(node, CommentedMap):
        lines: dict[str, int] = {}
        items: dict[str, Any] = {}
        for key in node:
            # A key merged in by `<<: *anchor` has no position of its own: the mapping's.
            line = node.lc.key(key)[0] + 1 if key in node.lc.data else node.lc.line + 1
            if not isinstance(key, str):
                raise ProjectError(f"mapping keys must be strings, got {key!r}", file=file, line=line)
            lines[key] = line
            items[key] = _convert(node[key], file)
        return YamlMapping(items, lines, file, node.lc.line + 1)
    if isinstance(node, CommentedSeq):
        return [_convert(item, file) for item in node]
    return node


def load_yaml(path: Path, display: str | None = None, limits: Limits = DEFAULT_LIMITS) -> YamlMapping:
    """Parse one YAML file whose top level must be a mapping (an empty file is an empty mapping)."""
    name = display or str(path)
    try:
        limits.check_size(path.stat().st_size, "yaml", name)
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProjectError(f"cannot read file: {exc}", file=name) from None
    return parse_yaml(text, name, limits)


def parse_yaml(text: str, name: str, limits: Limits = DEFAULT_LIMITS) -> YamlMapping:
    limits.check_size(len(text.encode("utf-8", "surrogatepass")), "yaml", name)
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        with recursion_refused(limits, name):
            _flow_depth(text, name, limits)
            _check_shape(yaml, text, name, limits)
            data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ProjectError(f"invalid YAML: {problem}", file=name, line=line) from None
    except YAMLError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid YAML"
        raise ProjectError(f"invalid YAML: {first}", file=name) from None
    if data is None:
        return YamlMapping({}, {}, name, 1)
    if not isinstance(data, CommentedMap):
        raise ProjectError("the top level must be a mapping", file=name, line=1)
    with recursion_refused(limits, name):
        converted = _convert(data, name)
    assert isinstance(converted, YamlMapping)
    return converted


def _flow_depth(text: str, name: str, limits: Limits) -> None:
    """Refuse flow collections (`[`, `{`) nested deeper than `limits.max_nesting`, from the text:
    ruamel's scanner looks far ahead in deep flow nesting and takes seconds before the first event.
    A bracket or a quote counts only where a YAML token starts (after `:`, `-`, `?`, a line start,
    or inside a flow collection after `[`, `{`, `,`), so brackets in plain text, quoted scalars and
    comments do not."""
    depth, line, i, n = 0, 1, 0, len(text)
    last = "\n"  # the last character that is not a space
    while i < n:
        c = text[i]
        starts = last in ":-?\n" if depth == 0 else last in "[{,:"
        if c == "\n":
            line += 1
        elif c in "\"'" and starts:
            i += 1
            while i < n and not (text[i] == c and not (c == '"' and text[i - 1] == "\\")):
                if c == "'" and text.startswith("''", i):
                    i += 1
                line += text[i] == "\n"
                i += 1
        elif c == "#" and (i == 0 or text[i - 1].isspace()):
            while i + 1 < n and text[i + 1] != "\n":
                i += 1
        elif c in "[{" and starts:
            depth += 1
            if depth > limits.max_nesting:
                raise limits.too_deep(depth, name, line)
        elif c in "]}" and depth:
            depth -= 1
        if i < n and (not text[i].isspace() or text[i] == "\n"):
            last = text[i]
        i += 1


def _check_shape(yaml: YAML, text: str, name: str, limits: Limits) -> None:
    """Refuse a document nested too deeply, or one whose aliases would expand it past
    `limits.max_yaml_nodes`, from the event stream alone: before anything is built or expanded (a
    few hundred bytes of nested aliases expand to gigabytes: "billion laughs")."""
    sizes: dict[str, int] = {}  # anchor -> the nodes its value expands to
    stack: list[tuple[str | None, int]] = [(None, 0)]  # open collections: (anchor, nodes so far)
    for event in yaml.parse(text):
        line = event.start_mark.line + 1 if event.start_mark is not None else None
        if isinstance(event, CollectionStartEvent):
            stack.append((event.anchor, 1))
            if len(stack) - 1 > limits.max_nesting:
                raise limits.too_deep(len(stack) - 1, name, line)
            continue
        if isinstance(event, CollectionEndEvent):
            anchor, nodes = stack.pop()
        elif isinstance(event, AliasEvent):
            anchor, nodes = None, sizes.get(event.anchor, 1)
        elif isinstance(event, ScalarEvent):
            anchor, nodes = event.anchor, 1
        else:
            continue
        if anchor is not None:
            sizes[anchor] = nodes
        parent_anchor, parent_nodes = stack[-1]
        stack[-1] = (parent_anchor, parent_nodes + nodes)
        if parent_nodes + nodes > limits.max_yaml_nodes:
            raise ProjectError(f"its aliases expand it to more than {limits.max_yaml_nodes} values; the "
                               "server setting max_yaml_nodes raises the limit", file=name, line=line)
