"""A policy document: read from YAML, with the line of every key, to name them in errors.

Keys are dotted paths (`rules.naming.level`, `custom[0].when`). Lines come from ruamel's round-trip
nodes, from mappings that carry a `lines` dict (as `runner.project.yamlfile.YamlMapping` does), or from an
explicit path -> line mapping the caller passes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from policies.errors import PolicyError


def read_yaml(text: str, name: str) -> Mapping[str, Any]:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        data = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise PolicyError(f"invalid YAML: {exc.problem or exc.context or 'syntax error'}", file=name,
                          line=line) from None
    except YAMLError as exc:
        raise PolicyError(f"invalid YAML: {str(exc).strip().splitlines()[0]}", file=name) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise PolicyError("the top level must be a mapping", file=name, line=1)
    return data


class Document:
    """One policy document, to name it in errors: file, key prefix and the line of each key."""

    def __init__(self, file: str, prefix: str = "", lines: Mapping[str, int] | None = None):
        self.file = file
        self.prefix = prefix
        self.lines: dict[str, int] = {}
        self.explicit = dict(lines or {})

    def line(self, path: str) -> int | None:
        while path:
            if path in self.explicit:
                return self.explicit[path]
            if path in self.lines:
                return self.lines[path]
            path = re.sub(r"(\.[^.\[]+|\[\d+\])$", "", path) if re.search(r"[.\[]", path) else ""
        return None

    def track(self, data: Any) -> None:
        collect_lines(data, "", self.lines)

    def error(self, path: str, message: str) -> PolicyError:
        return PolicyError(message, file=self.file, key=self.prefix + path, line=self.line(path))


def collect_lines(node: Any, path: str, out: dict[str, int]) -> None:
    own_line = getattr(node, "line", None)
    if path and isinstance(own_line, int):
        out.setdefault(path, own_line)
    lc = getattr(node, "lc", None)
    if isinstance(node, Mapping):
        key_lines = getattr(node, "lines", None)
        for key, value in node.items():
            sub = f"{path}.{key}" if path else str(key)
            line = None
            if lc is not None:
                try:
                    line = lc.key(key)[0] + 1
                except (KeyError, TypeError, AttributeError):
                    line = None
            elif isinstance(key_lines, Mapping):
                line = key_lines.get(key)
            if isinstance(line, int):
                out.setdefault(sub, line)
            collect_lines(value, sub, out)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            sub = f"{path}[{index}]"
            if lc is not None:
                with contextlib.suppress(KeyError, TypeError, AttributeError, IndexError):
                    out.setdefault(sub, lc.item(index)[0] + 1)
            collect_lines(item, sub, out)
