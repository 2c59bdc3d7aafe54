"""The files of a project, found so that none outside its checkout is ever read: every path is
resolved, and a symlink that leads out of the checkout is refused with the file named.

A checkout is hostile input: `models/orders.sql -> /proc/self/environ` or `seeds -> /` must not
turn Sluice into a file reader for whoever opens a merge request.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from runner.errors import ProjectError


def rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def inside(root: Path, path: Path, shown: str | None = None) -> Path:
    """`path` resolved (symlinks followed), refused unless it stays inside `root` (resolved)."""
    shown = shown or _shown(root, path)
    try:
        resolved = path.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # a symlink loop
        raise ProjectError(f"cannot resolve the path: {exc}", file=shown) from None
    if not resolved.is_relative_to(root):
        raise ProjectError("is a symlink that leads outside the repository; Sluice reads only files "
                           "inside the checkout (replace the link with the file itself)", file=shown)
    return resolved


def project_files(root: Path, directory: Path, suffixes: tuple[str, ...]) -> Iterator[Path]:
    """Files under `directory` (inside `root`) ending in one of `suffixes`, sorted, as paths under
    `root` (not resolved, so that their names are the repository's). A symlink among them, to a
    file or a folder, must stay inside the checkout; symlinked folders are not walked into (they
    would let one file be read twice, or loop)."""
    if not directory.exists() and not directory.is_symlink():
        return iter(())
    inside(root, directory)
    if not directory.is_dir():
        return iter(())
    found: list[Path] = []
    for folder, subfolders, names in os.walk(directory, followlinks=False):
        base = Path(folder)
        for name in list(subfolders):
            if (base / name).is_symlink():
                inside(root, base / name)
                subfolders.remove(name)
        for name in names:
            path = base / name
            if path.suffix not in suffixes:
                continue
            if path.is_symlink():
                inside(root, path)
            if path.is_file():
                found.append(path)
    return iter(sorted(found))


def _shown(root: Path, path: Path) -> str:
    try:
        return rel(root, path)
    except ValueError:
        return str(path)
