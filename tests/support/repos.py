"""Real git repositories for tests: a copy of the demo shop a test edits and commits (`Shop`), and
a data team's origin with a bare "server" copy and a working clone (`Origin`)."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from runner.project.loader import load_project
from runner.project.nodes import Project
from tests.support.paths import DEMO

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Sluice Tests", "GIT_AUTHOR_EMAIL": "tests@sluice.test",
    "GIT_COMMITTER_NAME": "Sluice Tests", "GIT_COMMITTER_EMAIL": "tests@sluice.test",
    "GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class Shop:
    """A copy of the demo project that a test may edit, and commit when it is a git repository."""

    root: Path

    def load(self) -> Project:
        return load_project(self.root)

    def path(self, rel: str) -> Path:
        return self.root / rel

    def read(self, rel: str) -> str:
        """The file's text with its line endings as they are (the demo's seeds use CRLF)."""
        return self.path(rel).read_bytes().decode("utf-8")

    def write(self, rel: str, text: str) -> None:
        path = self.path(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(text.encode("utf-8"))

    def edit(self, rel: str, old: str, new: str) -> None:
        """Replace `old` (which must occur exactly once) with `new` in one project file."""
        text = self.read(rel)
        assert text.count(old) == 1, f"{rel} holds {text.count(old)} copies of {old!r}"
        self.write(rel, text.replace(old, new))

    def remove(self, rel: str) -> None:
        self.path(rel).unlink()

    def git(self, *args: str) -> str:
        env = {"PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(self.root), **GIT_ENV}
        done = subprocess.run(["git", *args], cwd=self.root, env=env, check=True,
                              capture_output=True, text=True)
        return done.stdout.strip()

    def commit(self, message: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", message)
        return self.git("rev-parse", "HEAD")


def edit_model(root: Path, rel: str, old: str, new: str) -> None:
    """Edit one file of a project by string replacement; `old` must occur exactly once."""
    Shop(root).edit(rel, old, new)



ORIGIN_GIT_ENV = {"GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@shop.test", "GIT_COMMITTER_NAME": "Dev",
           "GIT_COMMITTER_EMAIL": "dev@shop.test", "PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env=ORIGIN_GIT_ENV).stdout.strip()


class Origin:
    """The data team's repository: a bare 'server' copy and a working clone to make changes in."""

    def __init__(self, root: Path, source: Path = DEMO):
        self.work = root / "work"
        shutil.copytree(source, self.work, ignore=shutil.ignore_patterns(
            ".git", ".sluice", "target", "logs", "dbt_packages", "*.duckdb"))
        git(self.work, "init", "-q", "-b", "main")
        git(self.work, "add", ".")
        git(self.work, "commit", "-q", "-m", "shop")
        self.bare = root / "origin.git"
        git(root, "clone", "-q", "--bare", str(self.work), str(self.bare))
        git(self.work, "remote", "add", "origin", str(self.bare))

    def branch(self, name: str, edits: dict[str, tuple[str, str]], base: str = "main") -> str:
        git(self.work, "checkout", "-q", "-B", name, base)
        return self.commit(name, edits)

    def commit(self, branch: str, edits: dict[str, tuple[str, str]]) -> str:
        git(self.work, "checkout", "-q", branch)
        for rel, (old, new) in edits.items():
            path = self.work / rel
            text = path.read_text()
            assert old in text, (rel, old)
            path.write_text(text.replace(old, new))
        git(self.work, "commit", "-q", "-am", f"edit {', '.join(edits)}")
        git(self.work, "push", "-q", "-f", "origin", branch)
        return git(self.work, "rev-parse", "HEAD")

    def merge(self, branch: str) -> str:
        git(self.work, "checkout", "-q", "main")
        git(self.work, "merge", "-q", "--no-ff", branch, "-m", f"Merge {branch}")
        git(self.work, "push", "-q", "origin", "main")
        return git(self.work, "rev-parse", "HEAD")


