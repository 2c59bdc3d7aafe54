"""Rules over one model: its SQL (one safe query, no forbidden calls, no `SELECT *`) and its metadata
(unique key, naming by layer, personal data in public schemas, description)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from sqlglot import exp

from policies.findings import Finding, RuleSettings
from policies.rules.base import ModelRule, ModelView
from policies.sql import (
    FORBIDDEN_NODES,
    READING_FUNCTIONS,
    FunctionMatcher,
    function_names,
    kind,
    pathlike_tables,
    star_projections,
)

if TYPE_CHECKING:
    from policies.policy import Policy


def single_query(rule: RuleSettings, policy: Policy, model: ModelView) -> Iterator[Finding]:
    """Exactly one SELECT that reads only the warehouse's tables."""
    parsed = model.parsed
    if parsed.error is not None:
        yield model.finding(rule, f"the SQL does not parse: {parsed.error}")
        return
    if not parsed.statements:
        yield model.finding(rule, "the file holds no query")
        return
    if len(parsed.statements) > 1:
        kinds = ", ".join(kind(s) for s in parsed.statements)
        yield model.finding(rule, f"the file holds {len(parsed.statements)} statements ({kinds}); "
                            "a model is exactly one SELECT", parsed.statements[1])
        return
    statement = parsed.statements[0]
    if not isinstance(statement, exp.Query):
        yield model.finding(rule, f"a model is a SELECT query, this is {kind(statement)}", statement)
        return
    seen: set[str] = set()
    for node in statement.walk():
        if isinstance(node, FORBIDDEN_NODES) and kind(node) not in seen:
            seen.add(kind(node))
            yield model.finding(rule, f"{kind(node)} inside the query; a model only reads", node)
        elif isinstance(node, exp.Func):
            reading = sorted(function_names(node) & READING_FUNCTIONS)
            if reading and reading[0] not in seen:
                seen.add(reading[0])
                yield model.finding(rule, f"{reading[0]}() reaches outside the warehouse's tables (files, "
                                    "URLs, other databases, server settings); a model reads tables only",
                                    node)
    for table in pathlike_tables(statement):
        yield model.finding(rule, f"{table.name!r} is a file path or URL, not a table", table)


def forbidden_functions(rule: RuleSettings, policy: Policy, model: ModelView) -> Iterator[Finding]:
    query = model.query
    if query is None or not policy.forbidden_functions:
        return
    matcher = FunctionMatcher(policy.forbidden_functions, model.facts.dialect)
    seen: set[str] = set()
    for node in query.walk():
        if not isinstance(node, exp.Func):
            continue
        name = matcher.match(node)
        if name is not None and name not in seen:
            seen.add(name)
            yield model.finding(rule, f"calls {name}(), which this policy forbids", node)


def select_star(rule: RuleSettings, policy: Policy, model: ModelView) -> Iterator[Finding]:
    query = model.query
    if query is None or model.facts.schema not in policy.select_star_schemas:
        return
    for star in star_projections(query):
        yield model.finding(rule, f"`{star.sql()}` in the output of a {model.facts.schema} model "
                            "passes on whatever columns upstream has", star)
        return


def unique_key(rule: RuleSettings, policy: Policy, model: ModelView) -> Iterator[Finding]:
    facts = model.facts
    if facts.materialized == "view" or facts.unique_key or facts.has_unique_test:
        return
    yield model.finding(rule, f"table model {facts.name} declares no unique key and has no unique test")


def naming(rule: RuleSettings, policy: Policy, model: ModelView) -> Iterator[Finding]:
    facts = model.facts
    prefixes = policy.naming.get(facts.schema)
    if not prefixes or facts.table.startswith(prefixes):
        return
    wanted = " or ".join(f"`{p}…`" for p in prefixes)
    yield model.finding(rule, f"models in schema {facts.schema} are named {wanted}; "
                        f"`{facts.table}` is not",
                        fix=f"Rename {facts.path} to start with {wanted} and update the models that "
                        "read it.")


def pii(rule: RuleSettings, policy: Policy, model: ModelView) -> Iterator[Finding]:
    facts = model.facts
    if facts.schema not in policy.public_schemas:
        return
    tags = set(policy.pii_tags)
    reaching = set(model.project.pii_flows.get(facts.name, frozenset()))
    reaching |= {f"{facts.name}.{c.name}" for c in facts.columns if tags & {t.lower() for t in c.tags}}
    if reaching:
        yield model.finding(rule, f"personal data reaches public schema {facts.schema}: "
                            f"{', '.join(sorted(reaching))}")


def description(rule: RuleSettings, policy: Policy, model: ModelView) -> Iterator[Finding]:
    if not model.facts.description.strip():
        yield model.finding(rule, f"model {model.facts.name} has no description")


MODEL_RULES: dict[str, ModelRule] = {
    "single-query": single_query,
    "forbidden-functions": forbidden_functions,
    "select-star": select_star,
    "unique-key": unique_key,
    "naming": naming,
    "pii": pii,
    "description": description,
}
