"""What ships: a wheel built from this checkout, installed into a fresh virtualenv, carries its
package data (report and page templates, the demo project, the default policy) and runs
`sluice demo` from anywhere."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.support.paths import REPO


@pytest.mark.slow
def test_the_wheel_installs_into_a_fresh_venv_and_runs_the_demo(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(wheels), str(REPO)], check=True, capture_output=True, cwd=tmp_path)
    [wheel] = wheels.glob("sluice-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = venv / "bin" / "python"
    # Sluice's dependencies come from the test environment's site-packages (a plain path, so its
    # own .pth files, among them the editable install of this checkout, are not run); Sluice
    # itself only from the wheel.
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)],
                   check=True, capture_output=True)

    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run([str(python), "-c", "import bot, runner, policies; "
                            "print(bot.__file__, runner.__file__, policies.__file__)"],
                           check=True, capture_output=True, text=True, cwd=tmp_path, env=env).stdout
    assert str(REPO) not in where and str(site) in where, where

    demo = subprocess.run([str(venv / "bin" / "sluice"), "demo", "--dir", str(tmp_path / "demo")],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert demo.returncode == 0, demo.stdout[-2000:] + demo.stderr[-2000:]
    assert "Promote mr_1 -> prod" in demo.stdout, demo.stdout[-2000:]

    # The page templates and the default policy travel too.
    check = ("from importlib import resources; "
             "assert (resources.files('bot.web') / 'templates' / 'run.html.j2').is_file(); "
             "assert (resources.files('bot.report') / 'templates' / 'report.md.j2').is_file(); "
             "from policies import load_policy; load_policy(None)")
    subprocess.run([str(python), "-c", check], check=True, cwd=tmp_path, env=env)
