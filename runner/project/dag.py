"""The dependency graph of a project's nodes: topological order, cycles, downstream closure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter


class Cycle(Exception):
    def __init__(self, path: list[str]):
        self.path = path
        super().__init__(" -> ".join(path))


@dataclass(frozen=True)
class DAG:
    """Edges point from a node to the nodes it reads (its parents)."""

    parents: Mapping[str, tuple[str, ...]]
    order: tuple[str, ...] = field(default=())
    children: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, parents: Mapping[str, Iterable[str]]) -> DAG:
        graph = {node: tuple(sorted(set(deps))) for node, deps in parents.items()}
        sorter = TopologicalSorter(graph)
        try:
            order = tuple(sorter.static_order())
        except CycleError as exc:
            # graphlib reports the cycle as [a, b, ..., a] read along child -> parent edges.
            path = list(reversed(exc.args[1]))
            raise Cycle(path) from None
        children: dict[str, list[str]] = {node: [] for node in graph}
        for node, deps in graph.items():
            for dep in deps:
                children.setdefault(dep, []).append(node)
        known = set(graph)
        return cls(
            parents=graph,
            order=tuple(n for n in order if n in known),
            children={n: tuple(sorted(c)) for n, c in children.items()},
        )

    def downstream(self, nodes: Iterable[str]) -> set[str]:
        """Every node that reads any of `nodes`, directly or transitively (excluding them)."""
        seen: set[str] = set()
        stack = list(nodes)
        while stack:
            for child in self.children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return seen

    def upstream(self, nodes: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        stack = list(nodes)
        while stack:
            for parent in self.parents.get(stack.pop(), ()):
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return seen
