"""Where the tests find things: the repository, the demo project, the fixtures."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "bot" / "demo" / "project"
FIXTURES = REPO / "tests" / "fixtures"
FORGE_FIXTURES = FIXTURES / "forges"
GOLDEN = FIXTURES / "golden"
