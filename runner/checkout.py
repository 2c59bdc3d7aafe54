"""Git checkouts for jobs: one bare mirror per repository, fetched incrementally, and one
worktree per job at the exact commit, removed afterwards (GitPython).

The fetch URL may carry a token: it is never logged, and errors are reported without it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import git

from runner.errors import SluiceError

SHA = re.compile(r"^[0-9a-f]{7,64}$")
# Branch heads plus the refs where forges keep merge-request heads (GitHub pull/N/head,
# GitLab merge-requests/N/head): a fork's commits are only reachable there.
REFSPECS = [
    "+refs/heads/*:refs/heads/*",
    "+refs/pull/*/head:refs/pull/*/head",
    "+refs/merge-requests/*/head:refs/merge-requests/*/head",
]


class CheckoutError(SluiceError):
    """The commit could not be fetched or checked out; `transient` when a retry may help."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message, transient=transient)


def redact(text: str) -> str:
    """Remove credentials from URLs in a message."""
    return re.sub(r"(://)[^/@\s]+@", r"\1***@", text)


class Mirrors:
    def __init__(self, root: Path, allow_local: bool = False):
        self.root = Path(root)
        self.allow_local = allow_local

    def _mirror_path(self, key: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:80]
        digest = hashlib.sha256(key.encode()).hexdigest()[:8]
        return self.root / "mirrors" / f"{slug}-{digest}.git"

    def check_url(self, url: str) -> None:
        if url.startswith(("https://", "http://", "ssh://", "git@")):
            return
        if self.allow_local and (url.startswith("file://") or url.startswith("/")):
            return
        raise CheckoutError(f"refusing to fetch from {redact(url)!r}: only https and ssh URLs are allowed")

    @contextmanager
    def _locked(self, mirror: Path) -> Iterator[None]:
        mirror.parent.mkdir(parents=True, exist_ok=True)
        with open(mirror.with_suffix(".lock"), "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def fetch(self, key: str, url: str, sha: str) -> git.Repo:
        """Bring the mirror of `key` up to date enough to hold `sha`."""
        if not SHA.match(sha):
            raise CheckoutError(f"{sha!r} is not a commit id")
        self.check_url(url)
        mirror = self._mirror_path(key)
        with self._locked(mirror):
            repo = git.Repo(mirror) if mirror.exists() else git.Repo.init(mirror, bare=True)
            if not _has_commit(repo, sha):
                try:
                    repo.git.fetch("--prune", "--quiet", url, *REFSPECS)
                except git.GitCommandError as exc:
                    detail = redact(str(exc.stderr).strip())[:500]
                    raise CheckoutError(f"git fetch failed: {detail}", transient=True) from None
                if not _has_commit(repo, sha):
                    # Not on any branch or MR ref: ask for the commit itself.
                    with contextlib.suppress(git.GitCommandError):
                        repo.git.fetch("--quiet", url, sha)
            if not _has_commit(repo, sha):
                raise CheckoutError(f"commit {sha} is not in the repository")
            return repo

    def read_file(self, key: str, url: str, sha: str, path: str) -> str | None:
        """One file's text at a commit, without a worktree (None when it is not there). A symlink
        is refused: its text is a path, and it would name a file outside the repository."""
        repo = self.fetch(key, url, sha)
        try:
            entry = str(repo.git.ls_tree(sha, "--", path))
            if entry.startswith("120000 "):
                raise CheckoutError(f"{path} is a symlink at {sha[:12]}; Sluice reads only files "
                                    "inside the repository (replace the link with the file itself)")
            return str(repo.git.show(f"{sha}:{path}"))
        except git.GitCommandError:
            return None

    def branch_head(self, key: str, url: str, branch: str) -> str | None:
        """The commit a branch of the remote points at now."""
        self.check_url(url)
        mirror = self._mirror_path(key)
        with self._locked(mirror):
            repo = git.Repo(mirror) if mirror.exists() else git.Repo.init(mirror, bare=True)
            try:
                repo.git.fetch("--prune", "--quiet", url, *REFSPECS)
                return str(repo.git.rev_parse(f"refs/heads/{branch}"))
            except git.GitCommandError:
                return None

    def contains(self, key: str, url: str, descendant: str, ancestor: str) -> bool:
        """Whether commit `descendant` has `ancestor` in its history (fetching them if needed).
        A git failure other than its "no" (exit 1) is a transient error. git also says "no" when
        it cannot read an object, so a promotion does not trust a "no" alone: `first_parent_line`
        (which fails on a missing object) decides whether production moves."""
        self.fetch(key, url, ancestor)
        repo = self.fetch(key, url, descendant)
        with self._locked(self._mirror_path(key)):
            try:
                repo.git.merge_base("--is-ancestor", ancestor, descendant)
                return True
            except git.GitCommandError as exc:
                if exc.status == 1:  # git's answer "not an ancestor"; anything else is a failure
                    return False
                raise _history_error(exc) from None

    def first_parent_line(self, key: str, url: str, base: str, tip: str) -> list[str] | None:
        """The commits after `base` up to `tip` along first parents, oldest first ([] when `tip`
        is `base` or behind it); None when `base` is not on that line (another history)."""
        self.fetch(key, url, base)
        repo = self.fetch(key, url, tip)
        with self._locked(self._mirror_path(key)):
            try:
                line = str(repo.git.rev_list("--first-parent", "--reverse", f"{base}..{tip}")).split()
                if not line:
                    return []
                # its first commit's first parent (a root commit has none: another history)
                parents = str(repo.git.rev_list("--parents", "-n", "1", line[0])).split()[1:]
                starts_at_base = bool(parents) and parents[0] == repo.git.rev_parse(base)
            except git.GitCommandError as exc:
                raise _history_error(exc) from None
        return line if starts_at_base else None

    def prune(self, in_use: Callable[[str], bool]) -> list[Path]:
        """Remove the worktrees whose label `in_use` says nobody uses (a killed job's), and the git
        metadata of every worktree that is gone. Returns the folders removed."""
        removed = []
        folder = self.root / "worktrees"
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.is_dir() and not in_use(worktree_label(path)):
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path)
        for mirror in sorted((self.root / "mirrors").glob("*.git")):
            with self._locked(mirror), contextlib.suppress(git.GitCommandError):
                git.Repo(mirror).git.worktree("prune")
        return removed

    @contextmanager
    def checkout(self, key: str, url: str, sha: str, label: str = "job") -> Iterator[Path]:
        """A worktree of `key` at `sha`, removed when the block ends. `label` (e.g. `run-12`) starts
        its folder's name, so that one a killed process left behind can be told apart from one in
        use (`prune`)."""
        repo = self.fetch(key, url, sha)
        path = self.root / "worktrees" / f"{label}-{uuid.uuid4().hex[:12]}"
        path.parent.mkdir(parents=True, exist_ok=True)
        mirror = Path(repo.git_dir)
        with self._locked(mirror):
            try:
                repo.git.worktree("add", "--detach", "--quiet", str(path), sha)
            except git.GitCommandError as exc:
                raise CheckoutError(f"git worktree failed: {redact(str(exc.stderr).strip())[:500]}") from None
        try:
            yield path
        finally:
            with self._locked(mirror):
                try:
                    repo.git.worktree("remove", "--force", str(path))
                except git.GitCommandError:
                    shutil.rmtree(path, ignore_errors=True)
                    repo.git.worktree("prune")


def _history_error(exc: git.GitCommandError) -> CheckoutError:
    detail = redact(str(exc.stderr).strip())[:300]
    return CheckoutError(f"git could not read the commits' history: {detail}", transient=True)


def worktree_label(path: Path) -> str:
    """The label a worktree folder was made with (`run-12-1f2e...` -> `run-12`)."""
    return path.name.rsplit("-", 1)[0]


def _has_commit(repo: git.Repo, sha: str) -> bool:
    try:
        repo.git.cat_file("-e", f"{sha}^{{commit}}")
        return True
    except git.GitCommandError:
        return False
