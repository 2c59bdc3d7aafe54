"""Benchmark Sluice against SQLMesh and dbt on generated layered projects and print ratios."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import generate  # sibling module; the line above makes it importable from any cwd

BENCH_DIR = generate.BENCH_DIR
REPO_DIR = BENCH_DIR.parent
VENVS_DIR = generate.VENVS_DIR

TOOLS = generate.TOOLS
TOOL_LABELS = {"sluice": "Sluice", "sqlmesh": "SQLMesh", "dbt": "dbt"}
STEPS = ("full", "noop", "branch")
STEP_LABELS = {
    "full": "full prod build",
    "noop": "no-op plan",
    "branch": "branch env, 1 change",
}
SLUICE_ENV = "dev1"
DBT_STATE_DIR = "prod_state"

# Prefix of each environment's schemas, used to check the branch step really built something.
DEV_SCHEMA_SUFFIX = {"sluice": f"__{SLUICE_ENV}", "sqlmesh": "__dev", "dbt": "_dev"}
CHECK_MART = "mart_orders_00"


@dataclass
class StepResult:
    """Timing of one CLI step for one tool and project size."""

    models: int
    tool: str
    step: str
    seconds: float | None = None
    samples: list[float] = field(default_factory=list)
    ok: bool = False
    verified: bool | None = None
    command: str = ""
    log: str = ""
    error: str = ""


class ToolError(RuntimeError):
    """A tool's CLI is missing or a step failed."""


# --------------------------------------------------------------------------- tools


class Tool(ABC):
    """How to drive one tool's CLI through the three benchmark steps."""

    name: str = ""

    def __init__(self, root: Path, args: argparse.Namespace) -> None:
        self.root = root
        self.args = args

    @abstractmethod
    def available(self) -> str | None:
        """None when the CLI can run, else a reason why not."""

    @abstractmethod
    def commands(self) -> dict[str, list[str]]:
        """The command line of each step."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def python(self) -> str:
        return generate.tool_python(self.name)

    def database(self) -> Path:
        return self.root / "warehouse.duckdb"

    def after_step(self, step: str) -> None:  # noqa: B027  (most tools need nothing here)
        """Untimed bookkeeping after a step (e.g. saving dbt's production manifest)."""


class SluiceTool(Tool):
    name = "sluice"

    def exe(self) -> str | None:
        if self.args.sluice:
            return str(self.args.sluice)
        local = Path(sys.executable).parent / "sluice"
        return str(local) if local.exists() else shutil.which("sluice")

    def available(self) -> str | None:
        return None if self.exe() else "the `sluice` command was not found"

    def commands(self) -> dict[str, list[str]]:
        exe = self.exe() or "sluice"
        # Same parallelism as dbt's threads and SQLMesh's concurrent_tasks (Sluice defaults to 4).
        extra = ["--threads", str(self.args.threads), *(self.args.sluice_arg or [])]
        prod = [exe, "plan", "prod", "--project", str(self.root), *extra]
        return {
            "full": prod,
            "noop": prod,
            "branch": [exe, "plan", SLUICE_ENV, "--project", str(self.root), *extra],
        }

    def python(self) -> str:
        return sys.executable

    def database(self) -> Path:
        return self.root / ".sluice" / "warehouse.duckdb"


class SqlmeshTool(Tool):
    name = "sqlmesh"

    def exe(self) -> Path:
        return VENVS_DIR / "sqlmesh" / "bin" / "sqlmesh"

    def available(self) -> str | None:
        ok = self.exe().exists()
        return None if ok else f"{self.exe()} missing: run bench/setup_competitors.sh"

    def commands(self) -> dict[str, list[str]]:
        flags = ["--auto-apply", "--no-prompts", "--skip-tests"]
        prod = [str(self.exe()), "plan", *flags]
        return {"full": prod, "noop": prod, "branch": [str(self.exe()), "plan", "dev", *flags]}


class DbtTool(Tool):
    name = "dbt"

    def exe(self) -> Path:
        return VENVS_DIR / "dbt" / "bin" / "dbt"

    def available(self) -> str | None:
        ok = self.exe().exists()
        return None if ok else f"{self.exe()} missing: run bench/setup_competitors.sh"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            DBT_PROFILES_DIR=str(self.root),
            DBT_SEND_ANONYMOUS_USAGE_STATS="false",
            DBT_USE_COLORS="false",
        )
        return env

    def commands(self) -> dict[str, list[str]]:
        dbt = str(self.exe())
        state = ["--state", DBT_STATE_DIR]
        return {
            "full": [dbt, "run"],
            "noop": [dbt, "run", "--select", "state:modified+", *state],
            "branch": [dbt, "run", "--select", "state:modified+", "--defer", *state, "--target", "dev"],
        }

    def after_step(self, step: str) -> None:
        if step == "full":
            state = self.root / DBT_STATE_DIR
            state.mkdir(exist_ok=True)
            shutil.copy2(self.root / "target" / "manifest.json", state / "manifest.json")


TOOL_CLASSES: dict[str, type[Tool]] = {"sluice": SluiceTool, "sqlmesh": SqlmeshTool, "dbt": DbtTool}


# --------------------------------------------------------------------------- running


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return "\n".join(text[-lines:])


def run_command(cmd: Sequence[str], cwd: Path, env: dict[str, str], log: Path, timeout: float) -> float:
    """Run one CLI command, logging its output; returns wall-clock seconds or raises ToolError."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as out:
        out.write(f"$ (cd {cwd} && {' '.join(cmd)})\n")
        out.flush()
        start = time.perf_counter()
        try:
            proc = subprocess.run(
                list(cmd), cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, timeout=timeout, check=False,
            )
        except FileNotFoundError as exc:
            raise ToolError(f"command not found: {cmd[0]} ({exc})") from exc
        except subprocess.TimeoutExpired as exc:
            raise ToolError(f"timed out after {timeout:.0f}s") from exc
        elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise ToolError(f"exit code {proc.returncode}; last lines of {log}:\n{_tail(log)}")
    return elapsed


_VERIFY_SCRIPT = """
import sys, duckdb
db, step, sfx, mart = sys.argv[1:5]
con = duckdb.connect(db, read_only=True)
def one(sql):
    return con.execute(sql).fetchone()[0]
if step == "full":
    n = one("SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema IN ('staging', 'intermediate', 'marts')")
    rows = one(f"SELECT count(*) FROM marts.{mart}")
    print(f"prod relations={n} {mart} rows={rows}")
    ok = n == int(sys.argv[5]) and rows > 0
else:
    prod_amount = one("SELECT sum(amount) FROM staging.stg_orders")
    dev_amount = one(f"SELECT sum(amount) FROM staging{sfx}.stg_orders")
    prod_mart = one(f"SELECT sum(total_value) FROM marts.{mart}")
    dev_mart = one(f"SELECT sum(total_value) FROM marts{sfx}.{mart}")
    print(f"stg_orders amount prod={prod_amount} dev={dev_amount}; {mart} prod={prod_mart} dev={dev_mart}")
    ok = abs(float(dev_amount) / float(prod_amount) - 1.05) < 0.01 and dev_mart != prod_mart
sys.exit(0 if ok else 3)
"""


def verify(tool: Tool, step: str, n_models: int, log: Path) -> bool:
    """Check (untimed) that a build step left the expected relations and data in the warehouse."""
    cmd = [
        tool.python(), "-c", _VERIFY_SCRIPT, str(tool.database()), step,
        DEV_SCHEMA_SUFFIX[tool.name], CHECK_MART, str(n_models),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    with log.open("a") as out:
        out.write(f"\n# verify ({'ok' if proc.returncode == 0 else 'FAILED'}): {proc.stdout}{proc.stderr}")
    return proc.returncode == 0


def bench_tool(tool: Tool, n_models: int, args: argparse.Namespace) -> list[StepResult]:
    """Run full build, no-op plan(s) and the one-change branch step for one tool."""
    results = [StepResult(n_models, tool.name, step) for step in STEPS]
    reason = tool.available()
    if reason:
        for r in results:
            r.error = reason
        print(f"  {TOOL_LABELS[tool.name]}: skipped ({reason})", flush=True)
        return results
    commands = tool.commands()
    for r in results:
        cmd = commands[r.step]
        r.command = " ".join(cmd)
        repeats = args.noop_repeats if r.step == "noop" else 1
        try:
            if r.step == "branch":
                generate.apply_change(tool.root)
            for i in range(repeats):
                suffix = "" if i == 0 else f"-{i + 1}"
                log = args.work / "logs" / f"n{n_models}-{tool.name}-{r.step}{suffix}.log"
                r.log = str(log)
                r.samples.append(run_command(cmd, tool.root, tool.env(), log, args.timeout))
            tool.after_step(r.step)
        except (ToolError, OSError) as exc:
            r.error = str(exc)
            print(f"  {TOOL_LABELS[tool.name]} {r.step}: FAILED: {r.error}", flush=True)
            break
        r.ok = True
        r.seconds = statistics.median(r.samples)
        if args.verify and r.step != "noop":  # a no-op plan has nothing to check
            r.verified = verify(tool, r.step, n_models, Path(r.log))
        note = "" if r.verified in (True, None) else "  (verification FAILED, see log)"
        extra = f" (median of {len(r.samples)})" if len(r.samples) > 1 else ""
        print(f"  {TOOL_LABELS[tool.name]:8s} {STEP_LABELS[r.step]:22s} {r.seconds:8.2f} s{extra}{note}",
              flush=True)
    for r in results:
        if not r.ok and not r.error:
            r.error = "skipped after an earlier failure"
    return results


# --------------------------------------------------------------------------- reporting


def _capture(cmd: Sequence[str]) -> str:
    try:
        proc = subprocess.run(list(cmd), capture_output=True, text=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unavailable"
    return proc.stdout.strip() if proc.returncode == 0 else "unavailable"


_VERSIONS_SCRIPT = (
    "import importlib.metadata as m\n"
    "for p in PKGS:\n"
    "    try:\n"
    "        print(p, m.version(p))\n"
    "    except m.PackageNotFoundError:\n"
    "        pass\n"
)


def versions() -> dict[str, str]:
    """Versions of the tools and of the duckdb each one uses."""
    out: dict[str, str] = {"python": platform.python_version()}
    wanted = {
        "sluice": (sys.executable, ["sluice", "duckdb", "sqlglot"]),
        "sqlmesh": (generate.tool_python("sqlmesh"), ["sqlmesh", "duckdb", "sqlglot"]),
        "dbt": (generate.tool_python("dbt"), ["dbt-core", "dbt-duckdb", "duckdb"]),
    }
    for tool, (python, pkgs) in wanted.items():
        if tool != "sluice" and python == sys.executable:
            continue
        script = _VERSIONS_SCRIPT.replace("PKGS", repr(pkgs))
        for line in _capture([python, "-c", script]).splitlines():
            if " " in line:
                pkg, version = line.split(" ", 1)
                out[f"{tool}:{pkg}"] = version
    return out


def machine() -> dict[str, str]:
    """A short description of the machine the benchmark ran on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cores": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
    }


def _fmt(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f} s"


def _ratio(other: float | None, sluice: float | None) -> str:
    if other is None or sluice is None or sluice <= 0:
        return "—"
    return f"{other / sluice:.1f}x"


def render_table(results: list[StepResult], tools: Sequence[str]) -> str:
    """A Markdown table: figure per tool, and each competitor's time divided by Sluice's."""
    by_key = {(r.models, r.tool, r.step): r for r in results}
    competitors = [t for t in tools if t != "sluice"]
    header = ["models", "figure", *(TOOL_LABELS[t] for t in tools)]
    if "sluice" in tools:
        header += [f"{TOOL_LABELS[t]}/Sluice" for t in competitors]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for n in sorted({r.models for r in results}):
        for step in STEPS:
            secs = {t: by_key[(n, t, step)].seconds if (n, t, step) in by_key else None for t in tools}
            row = [str(n), STEP_LABELS[step], *(_fmt(secs[t]) for t in tools)]
            if "sluice" in tools:
                row += [_ratio(secs[t], secs["sluice"]) for t in competitors]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def check_targets(results: list[StepResult]) -> list[str]:
    """The team's targets for Sluice, each marked PASS, FAIL or n/a."""
    by_key = {(r.models, r.tool, r.step): r.seconds for r in results}
    lines: list[str] = []

    def mark(label: str, value: float | None, limit: float | None) -> None:
        if value is None or limit is None:
            lines.append(f"n/a   {label}")
        else:
            verdict = "PASS" if value <= limit else "FAIL"
            lines.append(f"{verdict:5s} {label}: {value:.2f} s vs limit {limit:.2f} s")

    for n in sorted({r.models for r in results}):
        noop_limit = 1.0 if n <= 200 else 4.0 if n <= 2000 else None
        if noop_limit is not None:
            mark(f"N={n} Sluice no-op plan < {noop_limit:.0f} s", by_key.get((n, "sluice", "noop")),
                 noop_limit)
        sm_branch = by_key.get((n, "sqlmesh", "branch"))
        mark(f"N={n} Sluice branch env <= 1/2 SQLMesh's", by_key.get((n, "sluice", "branch")),
             None if sm_branch is None else sm_branch / 2)
        mark(f"N={n} Sluice full build <= SQLMesh's", by_key.get((n, "sluice", "full")),
             by_key.get((n, "sqlmesh", "full")))
    return lines


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", type=int, nargs="+", default=[200, 2000],
                        help="project sizes to benchmark (default: 200 2000)")
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS),
                        help="subset of tools to run (default: all)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write results as JSON to PATH")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2,
                        help="dbt threads, SQLMesh concurrent_tasks, sluice --threads (default: CPU count)")
    parser.add_argument("--noop-repeats", type=int, default=3,
                        help="run the no-op plan this many times and report the median (default: 3)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per-command timeout in seconds")
    parser.add_argument("--no-verify", dest="verify", action="store_false",
                        help="skip the untimed checks of what each step built")
    parser.add_argument("--sluice", type=Path, help="path of the sluice executable (default: next to python)")
    parser.add_argument("--sluice-arg", action="append", metavar="ARG",
                        help="extra argument appended to every sluice command (repeatable)")
    parser.add_argument("--work", type=Path, default=generate.WORK_DIR,
                        help="where generated projects go (default: bench/.work)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    tools = [t for t in TOOLS if t in args.tools]
    host, vers = machine(), versions()
    print("machine:", ", ".join(f"{k}={v}" for k, v in host.items()))
    print("versions:", ", ".join(f"{k}={v}" for k, v in vers.items()))
    results: list[StepResult] = []
    for n in args.models:
        down = generate.downstream_of(generate.build_models(n), generate.CHANGED_MODEL)
        print(f"\n== N={n} models ({len(down)} downstream of {generate.CHANGED_MODEL}); generating...",
              flush=True)
        start = time.perf_counter()
        roots = generate.generate(n, tuple(tools), args.work, args.threads)
        print(f"   generated {', '.join(tools)} projects in {time.perf_counter() - start:.1f} s", flush=True)
        for t in tools:
            results += bench_tool(TOOL_CLASSES[t](roots[t], args), n, args)

    print("\n" + render_table(results, tools))
    if "sluice" in tools:
        print("\nTargets:")
        for line in check_targets(results):
            print("  " + line)
    failures = [r for r in results if r.error]
    if failures:
        print("\nErrors:")
        for r in failures:
            first = r.error.splitlines()[0] if r.error else ""
            print(f"  N={r.models} {TOOL_LABELS[r.tool]} {r.step}: {first}")
    if args.json:
        payload = {
            "machine": host,
            "versions": vers,
            "threads": args.threads,
            "results": [asdict(r) for r in results],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    # Sluice may legitimately be unfinished; a broken competitor run is an error.
    return 1 if any(r.tool != "sluice" for r in failures) else 0


if __name__ == "__main__":
    raise SystemExit(main())
