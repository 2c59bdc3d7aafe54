"""Fingerprints: the identity of one version of a model or seed, and so of its physical table.

A model's fingerprint hashes its name, its canonical SQL, the settings that change the data it
holds (materialization, and its data config), and the data versions of the models and seeds it
reads. The name counts: two models with the same SQL and parents are two tables, so the data diff
never labels one model's data with the other's physical name, and an in-place change of one never
touches the other. Descriptions, tags and tests do not count: editing them never rebuilds anything.

Version 1 left the name out; `runner.state.rekey` moves a store's snapshots to version 2 without
rebuilding them (the recipe below is a function of what a snapshot record holds).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping

from runner.project.nodes import DataTest, Model, Seed

_DBT_TEST_FIELDS = ("label", "severity", "warn_if", "error_if", "limit", "fail_calc")
FINGERPRINT_VERSION = 2  # bump when the recipe changes, so old snapshots are not mistaken for new


def model_fingerprint(model: Model, upstream: Mapping[str, str]) -> str:
    return model_version(model.name, model.canonical, model.materialized, model.config, upstream)


def model_version(name: str, canonical: str, materialized: str, config: Iterable[tuple[str, str]],
                  upstream: Mapping[str, str]) -> str:
    """The fingerprint from its parts (a model, or a snapshot record being moved to this recipe)."""
    payload = {
        "v": FINGERPRINT_VERSION,
        "kind": "model",
        "name": name,
        "sql": canonical,
        "materialized": materialized,
        "config": sorted(config),
        "upstream": sorted(upstream.items()),
    }
    return _hash(payload)


def seed_fingerprint(seed: Seed) -> str:
    return seed_version(seed.name, seed.content_hash)


def seed_version(name: str, content_hash: str) -> str:
    return _hash({"v": FINGERPRINT_VERSION, "kind": "seed", "name": name, "content": content_hash})


def data_test_fingerprint(test: DataTest) -> str:
    """A data test's definition: what it checks and how (its kind, model, column, arguments, its
    canonical SQL for a singular test), not where it is written (file, line). A test whose
    fingerprint production has not seen is new or changed, and runs whatever the data did."""
    defaults = {f.name: f.default for f in dataclasses.fields(DataTest) if f.name in _DBT_TEST_FIELDS}
    # dbt's settings count only when set, so a plain test's fingerprint is what it always was.
    definition = {k: v for k, v in dataclasses.asdict(test).items()
                  if k not in ("file", "line") and not (k in defaults and v == defaults[k])}
    return _hash({"kind": "test", "test": definition})


def source_version(name: str) -> str:
    """Sources are read in place: their version is their name (drift is the report's business)."""
    return f"source:{name}"


def _hash(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
