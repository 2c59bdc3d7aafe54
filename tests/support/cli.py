"""The `sluice` command as the CLI tests drive it: in process through click's runner, on a copy of
the demo project, edited in place."""

from __future__ import annotations

import shutil
from pathlib import Path

from click.testing import CliRunner, Result

from bot.cli.main import main
from tests.support.paths import DEMO


def sluice(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def demo_copy(folder: Path) -> Path:
    """A copy of the demo project in `folder`/shop."""
    root = folder / "shop"
    shutil.copytree(DEMO, root)
    return root


def edit(path: Path, old: str, new: str) -> None:
    """Replace `old` (which must be there) by `new` in the file at `path`."""
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))
