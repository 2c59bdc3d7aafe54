"""Fingerprints: the identity of one version of a model or seed, and so of its physical table.

A model's fingerprint hashes its canonical SQL, the settings that change the data it holds
(materialization), and the data versions of the models and seeds it reads. Descriptions, tags and
tests do not count: editing them never rebuilds anything.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from runner.project.nodes import Model, Seed

FINGERPRINT_VERSION = 1  # bump when the recipe changes, so old snapshots are not mistaken for new


def model_fingerprint(model: Model, upstream: Mapping[str, str]) -> str:
    payload = {
        "v": FINGERPRINT_VERSION,
        "kind": "model",
        "sql": model.canonical,
        "materialized": model.materialized,
        "upstream": sorted(upstream.items()),
    }
    return _hash(payload)


def seed_fingerprint(seed: Seed) -> str:
    return _hash({"v": FINGERPRINT_VERSION, "kind": "seed", "content": seed.content_hash})


def source_version(name: str) -> str:
    """Sources are read in place: their version is their name (drift is the report's business)."""
    return f"source:{name}"


def _hash(payload: object) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
