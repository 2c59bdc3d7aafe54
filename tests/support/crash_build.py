"""Run Sluice's pipeline in a process of its own, so a test can kill it in the middle of a build.

    python tests/crash_build.py PROJECT STATE_URL WAREHOUSE ENVIRONMENT MODEL MARKER

Writes MARKER (a file) the moment MODEL starts building, then carries on as usual; the test waits
for the marker, lets the build get going, and sends SIGKILL.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repo root holds `runner`

from runner.engines.duckdb import DuckDBEngine
from runner.pipeline import run_pipeline
from runner.plan.definition import PlannedNode
from runner.project.loader import load_project
from runner.state.store import StateStore


def main(project: str, state_url: str, warehouse: str, environment: str, model: str,
         marker: str) -> int:
    def progress(node: PlannedNode, event: str) -> None:
        if node.name == model and event == "start":
            Path(marker).write_text(node.physical)

    state = StateStore(state_url)
    engine = DuckDBEngine(warehouse)
    result = run_pipeline(load_project(project), state, engine, environment, progress=progress)
    print("built:", ", ".join(result.build.built))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
