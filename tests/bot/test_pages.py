"""Run pages: what someone following the "full run" link in a merge request sees. Reports and logs
carry text from the merge request (model names, SQL, failing rows), so the page must show it, never
run it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from bot.broker import DramatiqDispatcher, declare_actor, make_broker, queue_name
from bot.config import ServerConfig
from bot.forges.github import GitHubConfig
from bot.forges.gitlab import GitLabConfig
from bot.records.runs import RunLog, RunStatus
from bot.web.app import create_app
from bot.web.pages import render_report
from runner.state.store import StateStore
from tests.support.paths import GOLDEN as GOLDEN_DIR

GOLDEN = GOLDEN_DIR / "report_breaking.md"
SCRIPT = "<script>alert('report')</script>"
IMG = '<img src=x onerror="alert(1)">'
LOG_SCRIPT = "<script>alert('log')</script>"


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield store
    store.close()


@pytest.fixture
def config(state: StateStore) -> ServerConfig:
    return ServerConfig(state_url=state.url, public_url="https://sluice.example",
                        forges={"gitlab": GitLabConfig(url="https://gitlab.example.com",
                                                       webhook_secret="s"),
                                "github": GitHubConfig(token="t", webhook_secret="s")})


@pytest.fixture
def client(state: StateStore, config: ServerConfig) -> FlaskClient:
    broker = make_broker("redis://127.0.0.1:6379/13")  # never contacted by these pages
    dispatcher = DramatiqDispatcher(broker, declare_actor(broker, lambda event_id: None, queue_name("test")))
    return create_app(config, state=state, dispatcher=dispatcher).test_client()


def finished_run(state: StateStore, report: str, forge: str = "gitlab") -> int:
    runs = RunLog(state)
    run_id = runs.create(forge, "data/shop", 42, "pipeline", sha="3f9a1c07e2b4d5a6c7e8f90123456789abcdef01",
                         environment="mr_42", event_id=None)
    runs.start(run_id)
    runs.append_log(run_id, "planning against prod")
    runs.append_log(run_id, f"model marts.orders: {LOG_SCRIPT} & more")
    runs.finish(run_id, RunStatus.SUCCESS, summary="2 modified · 3 built", report=report)
    return run_id


def test_the_run_page_shows_a_finished_run(client: FlaskClient, state: StateStore,
                                           config: ServerConfig) -> None:
    report = GOLDEN.read_text()
    run_id = finished_run(state, report)
    response = client.get(config.run_path(run_id))
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    for fact in ("success", "data/shop", "!42", "3f9a1c07e2b4d5a6c7e8f90123456789abcdef01", "mr_42",
                 "pipeline", "2 modified · 3 built", "planning against prod", "took"):
        assert fact in page, fact
    assert 'href="https://gitlab.example.com/data/shop/-/merge_requests/42"' in page
    # the report is rendered: its tables, code and collapsible sections
    assert "<table>" in page and "<code>marts.orders</code>" in page
    assert "<details><summary>marts.orders: changed values by column</summary>" in page
    assert "<!-- sluice-report -->" not in page
    token = config.run_path(run_id).split("?token=")[1]
    assert f'href="/runs/{run_id}.md?token={token}"' in page
    assert "http-equiv=\"refresh\"" not in page  # finished: nothing to wait for
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]


def test_html_in_the_report_and_log_is_shown_not_run(client: FlaskClient, state: StateStore,
                                                     config: ServerConfig) -> None:
    report = (f"### Plan {SCRIPT}\n\n| model | why |\n| --- | --- |\n| `x` | {IMG} |\n\n"
              f"{SCRIPT}\n\n[click](javascript:alert(1))\n\n"
              "<details><summary>rows <b onclick=x>bold</b></summary>\n\n- a\n</details>\n"
              "</details>\n<details open onToggle=alert(1)>\n")
    run_id = finished_run(state, report)
    page = client.get(config.run_path(run_id)).get_data(as_text=True)
    assert "<script" not in page
    assert "<img" not in page and "<b onclick" not in page and "<details open" not in page
    assert page.count("&lt;script&gt;alert('report')&lt;/script&gt;") == 2  # heading and paragraph
    assert "&lt;script&gt;alert(&#39;log&#39;)&lt;/script&gt; &amp; more" in page
    assert "&lt;img src=x onerror=" in page
    assert 'href="javascript:' not in page
    assert page.count("<details>") == page.count("</details>") == 1  # stray closers are text


def test_the_raw_markdown_report(client: FlaskClient, state: StateStore, config: ServerConfig) -> None:
    report = GOLDEN.read_text() + f"\n{SCRIPT}\n"
    run_id = finished_run(state, report, forge="github")
    response = client.get(config.run_path(run_id).replace("?", ".md?"))
    assert response.status_code == 200
    assert response.mimetype == "text/markdown"
    assert response.get_data(as_text=True) == report
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    page = client.get(config.run_path(run_id)).get_data(as_text=True)
    assert "#42" in page and 'href="https://github.com/data/shop/pull/42"' in page


def test_a_queued_run_refreshes_until_it_finishes(client: FlaskClient, state: StateStore,
                                                  config: ServerConfig) -> None:
    run_id = RunLog(state).create("github", "data/shop", 7, "pipeline")
    page = client.get(config.run_path(run_id)).get_data(as_text=True)
    assert "queued" in page and "No report yet" in page and "not yet" in page
    assert 'http-equiv="refresh"' in page


@pytest.mark.parametrize("path", ["/runs/999", "/runs/999.md", "/runs/99999999999999999999",
                                  "/runs/abc"])
def test_unknown_runs_are_not_found(client: FlaskClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404


def test_the_not_found_page_is_a_page(client: FlaskClient) -> None:
    response = client.get("/runs/12345")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "There is no run 12345" in response.get_data(as_text=True)


def test_render_report_leaves_code_blocks_alone() -> None:
    html = str(render_report("```sql\n<details><summary>x</summary>\nselect 1 < 2\n```\n"))
    assert "<details>" not in html
    assert "&lt;details&gt;&lt;summary&gt;x&lt;/summary&gt;" in html
    assert "select 1 &lt; 2" in html
