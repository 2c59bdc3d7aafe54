"""The README's first day, followed as written with real processes: `sluice init --git`, the
repository pushed to a (fake) GitLab, `sluice serve` and `sluice worker` running, `sluice
bootstrap`, a merge request through the forge's webhooks, its approval, and its merge."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.forges.base import Role
from bot.worker.text import MARKER
from tests.support.fakeforge import FakeGitLab
from tests.support.paths import REPO
from tests.support.repos import GIT_ENV, git
from tests.support.services import free_port, redis_client, redis_url

SLUICE = str(Path(sys.executable).parent / "sluice")
README = (REPO / "README.md").read_text(encoding="utf-8")


def first_day_commands() -> list[list[str]]:
    after = README.split("### 4. The first day", 1)[1]
    block = re.search(r"```\n(.*?)```", after, re.DOTALL)
    assert block
    return [line.split("  #")[0].rstrip(" &").split() for line in block.group(1).splitlines()
            if line.startswith("sluice ")]


def environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_") or k.startswith("SLUICE_TEST")}
    return {**env, **GIT_ENV, "HOME": str(tmp_path), "PROMETHEUS_MULTIPROC_DIR": ""}


def wait_for(check, what: str, timeout: float = 90.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def post(url: str, delivery: tuple[dict[str, str], bytes]) -> int:
    headers, body = delivery
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return int(answer.status)


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/readyz", timeout=2) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    with FakeGitLab() as fake:
        for user, role in (("alice", Role.DEVELOPER), ("bob", Role.DEVELOPER), ("maria", Role.MAINTAINER)):
            fake.set_role("data/shop", user, role)
        yield fake


@pytest.mark.slow
def test_the_first_day_as_the_readme_tells_it(tmp_path: Path, gitlab: FakeGitLab):
    assert [c[:2] for c in first_day_commands()] == [["sluice", "init"], ["sluice", "serve"],
                                                    ["sluice", "worker"], ["sluice", "bootstrap"]]
    redis_client("e2e").flushdb()
    env = environment(tmp_path)

    def sluice(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([SLUICE, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120)

    # sluice init shop --git, pushed to the forge as data/shop.
    made = sluice("init", "shop", "--git")
    assert made.returncode == 0 and "committed the project" in made.stdout, made.stdout + made.stderr
    shop = tmp_path / "shop"
    origin = tmp_path / "data-shop.git"
    git(tmp_path, "clone", "-q", "--bare", str(shop), str(origin))
    git(shop, "remote", "add", "origin", str(origin))
    gitlab.add_project("data/shop")

    # server.yml as the README's, for this machine; the secrets in the environment.
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    config = tmp_path / "server.yml"
    config.write_text(
        f"name: first_day\nstate_url: sqlite:///{tmp_path / 'state.db'}\nbroker_url: {redis_url('e2e')}\n"
        f"public_url: {public}\nwork_dir: {tmp_path / 'work'}\nallow_local_clones: true\n"
        f"gitlab:\n  url: {gitlab.url}\n"
        f"warehouses:\n  default: duckdb:///{tmp_path / 'warehouse.duckdb'}\n"
        f"repositories:\n  - forge: gitlab\n    name: data/shop\n    clone_url: {origin}\n")
    env.update(SLUICE_GITLAB_TOKEN=gitlab.token, SLUICE_GITLAB_WEBHOOK_SECRET=gitlab.webhook_secret)

    logs = tmp_path / "logs"
    logs.mkdir()
    processes = [
        subprocess.Popen([SLUICE, "serve", "--config", str(config), "--bind", f"127.0.0.1:{port}",
                          "--workers", "1"], cwd=tmp_path, env=env, stdout=(logs / "serve").open("w"),
                         stderr=subprocess.STDOUT),
        subprocess.Popen([SLUICE, "worker", "--config", str(config)], cwd=tmp_path, env=env,
                         stdout=(logs / "worker").open("w"), stderr=subprocess.STDOUT),
    ]
    try:
        wait_for(lambda: ready(public), "sluice serve")

        # sluice bootstrap: production from main's head, on the commit and a run page.
        built = sluice("bootstrap", "--config", str(config), "gitlab:data/shop")
        assert built.returncode == 0, built.stdout + built.stderr
        assert "production built from main at" in built.stdout and f"{public}/runs/" in built.stdout
        main = git(shop, "rev-parse", "main")
        assert [s["state"] for s in gitlab.statuses("data/shop", main)] == ["pending", "success"]

        # A merge request: the report and the merge gate arrive.
        git(shop, "switch", "-q", "-c", "names")
        model = shop / "models" / "staging" / "stg_users.sql"
        model.write_text(model.read_text().replace("    name,\n", "    upper(name) as name,\n"))
        git(shop, "commit", "-q", "-am", "Names in capitals")
        git(shop, "push", "-q", "origin", "names")
        head = git(shop, "rev-parse", "HEAD")
        gitlab.add_merge_request("data/shop", 1, head_sha=head, source_branch="names", author="alice")
        assert post(f"{public}/webhooks/gitlab", gitlab.merge_request_hook("data/shop", 1, "open")) == 202
        report = wait_for(lambda: next((c.body for c in gitlab.comments("data/shop", 1) if MARKER in c.body),
                                       None), "the report")
        assert "#### Plan against `prod`" in report and "merging will not promote to `prod`" in report

        # Approved on the forge: the gate opens; merged: production is promoted, nothing rebuilt.
        gitlab.approve("data/shop", 1, "bob")
        assert post(f"{public}/webhooks/gitlab",
                    gitlab.merge_request_hook("data/shop", 1, "approval", actor="bob")) == 202

        def promotion_status() -> str | None:
            found = [s for s in gitlab.statuses("data/shop", head) if s.get("name") == "sluice/promotion"]
            return found[-1]["state"] if found and found[-1]["state"] == "success" else None

        wait_for(promotion_status, "the merge gate to open")
        git(shop, "switch", "-q", "main")
        git(shop, "merge", "-q", "--no-ff", "names", "-m", "Merge names")
        git(shop, "push", "-q", "origin", "main")
        gitlab.merge("data/shop", 1, git(shop, "rev-parse", "HEAD"))
        assert post(f"{public}/webhooks/gitlab", gitlab.merge_request_hook("data/shop", 1, "merge")) == 202
        promoted = wait_for(lambda: next((c.body for c in gitlab.comments("data/shop", 1)
                                          if "Promoted to production" in c.body), None), "the promotion")
        assert "0 rebuilt" in promoted
        listed = sluice("env", "list", "-p", str(shop), "--server-config", str(config), "--format", "json")
        assert [e["name"] for e in json.loads(listed.stdout)] == ["prod"], listed.stdout + listed.stderr
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    for name in ("serve", "worker"):
        assert "Traceback" not in (logs / name).read_text(), (logs / name).read_text()[-3000:]
