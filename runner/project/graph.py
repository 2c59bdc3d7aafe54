"""A project's dependency graph from its models and seeds, or the one-line error of its cycle."""

from __future__ import annotations

from collections.abc import Mapping

from runner.errors import ProjectError
from runner.project.dag import DAG, Cycle
from runner.project.nodes import Model, Names, Seed, resolve_name


def project_dag(models: Mapping[str, Model], seeds: Mapping[str, Seed], names: Names) -> DAG:
    """The DAG of `models` and `seeds`; a cycle is refused naming the first model's file and the
    line of its reference to the next one (when its SQL says where)."""
    graph: dict[str, tuple[str, ...]] = {name: () for name in seeds}
    graph.update({name: model.depends_on for name, model in models.items()})
    try:
        return DAG.build(graph)
    except Cycle as cycle:
        first = models[cycle.path[0]]
        line = next((ref.line for ref in first.refs
                     if len(cycle.path) > 1 and resolve_name(ref.parts, names) == cycle.path[1]), None)
        raise ProjectError("dependency cycle: " + " -> ".join(cycle.path) + " (each model reads the next)",
                           file=first.path, line=line) from None
