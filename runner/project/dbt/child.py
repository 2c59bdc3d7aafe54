"""The process that runs dbt-core: `python -m runner.project.dbt.child REQUEST.json`.

It is started by `runner.project.dbt.compiler` with an environment that holds no secret (no forge
token, webhook secret or warehouse password), so the project's Jinja (`env_var()`, macros) sees
nothing it should not. It installs packages when asked, compiles, and leaves dbt's manifest in
the target folder it was given; it prints one JSON line saying how it went.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _flags(request: dict[str, Any]) -> list[str]:
    return ["--project-dir", request["project_dir"], "--profiles-dir", request["profiles_dir"],
            "--target", "prod"]


def main(argv: list[str]) -> int:
    request = json.loads(Path(argv[0]).read_text())
    # Imported here, not at the top: this module is also imported by the parent for its path,
    # and dbt takes a second to import.
    from dbt.cli.main import dbtRunner

    runner = dbtRunner()
    common = ["--quiet", "--no-use-colors", "--log-path", request["log_path"],
              "--no-send-anonymous-usage-stats", "--no-version-check"]
    if request.get("deps"):
        result = runner.invoke(["deps", *common, *_flags(request)])
        if not result.success:
            print(json.dumps({"ok": False, "step": "deps", "error": _message(result)}))
            return 0
    args = ["compile", *common, *_flags(request), "--target-path", request["target_path"],
            "--no-populate-cache", "--threads", "1",
            # is_incremental() must render false even where production's relation exists: Sluice
            # builds every snapshot in full (until incremental builds land).
            "--full-refresh"]
    if request.get("vars"):
        args += ["--vars", json.dumps(request["vars"])]
    if not request.get("partial_parse", True):
        args.append("--no-partial-parse")
    result = runner.invoke(args)
    if not result.success:
        print(json.dumps({"ok": False, "step": "compile", "error": _message(result)}))
        return 0
    print(json.dumps({"ok": True}))
    return 0


def _message(result: Any) -> str:
    if result.exception is not None:
        return " ".join(str(result.exception).split())
    failed = [r for r in getattr(result.result, "results", None) or []
              if str(getattr(r, "status", "")).lower() in ("error", "fail")]
    if failed:
        first = failed[0]
        return f"{first.node.original_file_path}: {' '.join(str(first.message).split())}"
    return "dbt failed without saying why"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
