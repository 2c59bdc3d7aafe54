"""The built-in rules: their ids (what `/approve <rule>` names), what they check, how to fix them.

Levels and who may override each rule are settings (see `default.yml`); the texts live here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A rule id must be something `/approve <rule>` can name (bot.commands.RULE).
RULE_ID = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class RuleInfo:
    id: str
    group: str  # "model" | "promotion" | "trust" | "environment"
    summary: str
    fix: str


BUILTIN_RULES: dict[str, RuleInfo] = {info.id: info for info in (
    RuleInfo("single-query", "model",
             "a model is exactly one SELECT: no DDL, DML, COPY, ATTACH, PRAGMA, SET, and no table "
             "functions that read files, URLs or other databases",
             "Keep one SELECT statement in the file. Sluice creates, replaces and loads tables "
             "itself; read raw files through seeds or sources declared in YAML."),
    RuleInfo("forbidden-functions", "model", "the model calls none of the forbidden functions",
             "Remove the call or replace it with a deterministic expression."),
    RuleInfo("select-star", "model",
             "no SELECT * in the final projection of models in the listed schemas (a star over a "
             "CTE of the same file whose columns are explicit is fine)",
             "List the columns the model exposes, so an upstream change cannot add or drop them "
             "silently."),
    RuleInfo("unique-key", "model", "every table model declares a unique_key or has a unique test",
             "Set `unique_key:` in the model's YAML entry, or add a `unique` test to its key column."),
    RuleInfo("naming", "model", "model names carry the prefix their schema (layer) requires",
             "Rename the file with one of the required prefixes and update the models that read it."),
    RuleInfo("pii", "model", "columns tagged as personal data never reach a public schema",
             "Drop, hash or aggregate the tagged columns before the public layer, or move the model "
             "to a non-public schema."),
    RuleInfo("description", "model", "every model has a description",
             "Add `description:` to the model's entry in a models YAML file."),
    RuleInfo("approvals", "promotion",
             "enough approvals from people other than the author before a protected environment",
             "Ask a colleague to review and comment `/approve`."),
    RuleInfo("tests", "promotion", "all data tests passed before a protected environment",
             "Fix the failing tests and push, or comment `/test` after fixing the data."),
    RuleInfo("policy-failures", "promotion", "no blocking policy finding is left unresolved",
             "Fix the findings, or have someone allowed to comment `/approve <rule>` for each."),
    RuleInfo("breaking", "promotion", "breaking changes are acknowledged",
             "Check the downstream impact in the report, then comment `/approve breaking`."),
    RuleInfo("stale-build", "promotion", "the head commit is the one that was built and tested",
             "Comment `/plan` so Sluice builds and tests the head commit."),
    RuleInfo("freeze", "promotion", "no promotion during a change-freeze window",
             "Wait until the freeze window ends, or have an owner comment `/approve freeze`."),
    RuleInfo("untrusted", "trust",
             "code from a fork or from an author below the trusted role is built only after a "
             "maintainer approves that very commit",
             "A maintainer reviews the change and comments `/approve`; every new commit needs a "
             "new approval."),
    RuleInfo("connection", "environment", "the repository names a connection the server allows it",
             "Use one of the connections the server allows for this repository, or ask its admin to "
             "allow this one."),
    RuleInfo("write-scope", "environment",
             "an environment writes only to its own schemas and the physical layer",
             "This is a bug or a hostile change: an environment never writes elsewhere. Report it."),
)}

MODEL_RULES = tuple(r.id for r in BUILTIN_RULES.values() if r.group == "model")
