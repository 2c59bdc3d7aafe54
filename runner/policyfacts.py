"""What the policy engine looks at, made from a loaded project: models, their metadata and
which pii-tagged columns reach each model through column lineage (runner → policies)."""

from __future__ import annotations

from policies import ColumnFacts, ModelFacts, ProjectFacts
from runner.lineage.project import Lineages, downstream_columns
from runner.project.nodes import Project


def project_facts(project: Project) -> ProjectFacts:
    unique_tests = {t.model for t in project.tests if t.kind == "unique" and t.model}
    models = tuple(
        ModelFacts(name=m.name, schema=m.schema, table=m.table, path=m.path, sql=_sql(project, m.path),
                   dialect=project.config.dialect, materialized=m.materialized, unique_key=m.unique_key,
                   has_unique_test=m.name in unique_tests, description=m.description,
                   columns=tuple(ColumnFacts(c.name, c.tags, c.description) for c in m.columns),
                   reads=m.depends_on, tags=m.tags)
        for m in project.models.values())
    return ProjectFacts(models=models, pii_flows=pii_flows(project))


def _sql(project: Project, path: str) -> str:
    """The file as written, so findings point at real lines (a dbt model's compiled SQL: its file
    is a template)."""
    if project.compiled:
        return project.models[next(n for n, m in project.models.items() if m.path == path)].canonical
    try:
        return (project.root / path).read_text(encoding="utf-8")
    except OSError:
        return project.models[next(n for n, m in project.models.items() if m.path == path)].canonical


def pii_flows(project: Project) -> dict[str, frozenset[str]]:
    """model -> the pii-tagged columns ("schema.table.column") whose data flows into it."""
    tagged = [(m.name, c.name) for m in project.models.values() for c in m.columns if "pii" in c.tags]
    if not tagged:
        return {}
    lineages = Lineages(project)
    flows: dict[str, set[str]] = {}
    for model, column in tagged:
        origin = f"{model}.{column}"
        flows.setdefault(model, set()).add(origin)
        for reached, _ in downstream_columns(project, lineages, model, column):
            flows.setdefault(reached, set()).add(origin)
    return {model: frozenset(origins) for model, origins in flows.items()}
