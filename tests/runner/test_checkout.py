"""Git mirrors and per-job worktrees, on real repositories."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runner.checkout import CheckoutError, Mirrors, redact


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                               "GIT_COMMITTER_EMAIL": "t@t", "PATH": "/usr/bin:/bin"}).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    (work / "a.txt").write_text("one\n")
    git(work, "add", ".")
    git(work, "commit", "-q", "-m", "one")
    bare = tmp_path / "origin.git"
    git(tmp_path, "clone", "-q", "--bare", str(work), str(bare))
    return bare


def head(repo: Path, ref: str = "main") -> str:
    return git(repo, "rev-parse", ref)


def test_worktree_at_the_exact_commit_and_removed_after(tmp_path: Path, origin: Path):
    mirrors = Mirrors(tmp_path / "cache", allow_local=True)
    sha = head(origin)
    with mirrors.checkout("t:repo", str(origin), sha) as tree:
        assert (tree / "a.txt").read_text() == "one\n"
        assert git(tree, "rev-parse", "HEAD") == sha
    assert not tree.exists()


def test_incremental_fetch_finds_new_commits(tmp_path: Path, origin: Path):
    mirrors = Mirrors(tmp_path / "cache", allow_local=True)
    first = head(origin)
    with mirrors.checkout("t:repo", str(origin), first):
        pass
    work = tmp_path / "work"
    (work / "a.txt").write_text("two\n")
    git(work, "commit", "-qam", "two")
    git(work, "push", "-q", str(origin), "main")
    second = head(origin)
    with mirrors.checkout("t:repo", str(origin), second) as tree:
        assert (tree / "a.txt").read_text() == "two\n"
    with mirrors.checkout("t:repo", str(origin), first) as tree:
        assert (tree / "a.txt").read_text() == "one\n"


def test_merge_request_refs_are_fetched(tmp_path: Path, origin: Path):
    work = tmp_path / "work"
    git(work, "checkout", "-q", "-b", "fork-change")
    (work / "a.txt").write_text("fork\n")
    git(work, "commit", "-qam", "fork")
    sha = head(work, "HEAD")
    git(work, "push", "-q", str(origin), "HEAD:refs/pull/7/head")  # only reachable from the PR ref
    with Mirrors(tmp_path / "cache", allow_local=True).checkout("t:repo", str(origin), sha) as tree:
        assert (tree / "a.txt").read_text() == "fork\n"


def test_unknown_commit_and_bad_input_are_refused(tmp_path: Path, origin: Path):
    mirrors = Mirrors(tmp_path / "cache", allow_local=True)
    with pytest.raises(CheckoutError, match="is not in the repository"), \
            mirrors.checkout("t:repo", str(origin), "0" * 40):
        pass
    with pytest.raises(CheckoutError, match="is not a commit id"), \
            mirrors.checkout("t:repo", str(origin), "main; rm -rf /"):
        pass
    with pytest.raises(CheckoutError, match="only https and ssh"):
        Mirrors(tmp_path / "c2").fetch("t:repo", str(origin), head(origin))


def test_fetch_failure_is_transient_and_hides_the_token(tmp_path: Path):
    mirrors = Mirrors(tmp_path / "cache")
    with pytest.raises(CheckoutError) as failure:
        mirrors.fetch("t:repo", "https://oauth2:s3cret-token@127.0.0.1:1/group/repo.git", "a" * 40)
    assert failure.value.transient
    assert "s3cret-token" not in str(failure.value)
    assert redact("https://x-access-token:abc@github.com/o/r.git") == "https://***@github.com/o/r.git"



def test_history_questions_a_promotion_asks(tmp_path: Path, origin: Path):
    """Whether production's commit contains a merge, and the first-parent line between them:
    empty when the merge is behind production (a late merge event moves nothing back)."""
    work = tmp_path / "more"
    git(tmp_path, "clone", "-q", str(origin), str(work))
    first = head(origin)
    shas = []
    for text in ("two\n", "three\n"):
        (work / "a.txt").write_text(text)
        git(work, "commit", "-q", "-am", text.strip())
        shas.append(head(work, "HEAD"))
    git(work, "push", "-q", "origin", "main")
    second, third = shas
    mirrors = Mirrors(tmp_path / "cache", allow_local=True)
    assert mirrors.contains("t:repo", str(origin), third, first)
    assert not mirrors.contains("t:repo", str(origin), first, third)
    assert mirrors.first_parent_line("t:repo", str(origin), first, third) == [second, third]
    assert mirrors.first_parent_line("t:repo", str(origin), third, second) == []
    assert mirrors.first_parent_line("t:repo", str(origin), third, third) == []
