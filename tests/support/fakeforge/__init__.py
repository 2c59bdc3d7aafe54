"""Fake GitLab and GitHub servers driven by the real clients (see `base` for what they offer), and
their pytest fixtures `fake_gitlab` and `fake_github`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.fakeforge.base import FIXTURES, Comment, FakeForge, MergeRequest, Request, fixture
from tests.support.fakeforge.github import FakeGitHub
from tests.support.fakeforge.gitlab import FakeGitLab

__all__ = ["FIXTURES", "Comment", "FakeForge", "FakeGitHub", "FakeGitLab", "MergeRequest", "Request",
           "fake_github", "fake_gitlab", "fixture"]


@pytest.fixture
def fake_gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as server:
        yield server


@pytest.fixture
def fake_github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server
