"""Run pages: /runs/<id> shows a run's status, timings, report and log as HTML; /runs/<id>.md is
the raw Markdown report. Both need the run's token (`?token=`, see `bot.links`): without a valid
one the run does not exist (404). Everything shown came from a merge request, so nothing is
trusted: the templates autoescape, and the report goes through a Markdown renderer that emits no
raw HTML."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from functools import lru_cache

from flask import Blueprint, Response, render_template, request
from markdown_it import MarkdownIt
from markupsafe import Markup

from bot.config import ServerConfig
from bot.forges import FORGES
from bot.links import valid_token
from bot.records.runs import Run
from bot.web.context import sluice
from runner.artifacts import FILES as ARTIFACTS
from runner.naming import is_environment_name

pages = Blueprint("pages", __name__)

MAX_ID = 2**31 - 1  # the ids' column type; larger ids cannot exist (and PostgreSQL would refuse them)
REFRESH_SECONDS = 10
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

# The report's collapsible sections are the one piece of HTML it may carry; they are matched line by
# line and rebuilt, never passed through.
_DETAILS_OPEN = re.compile(r"^\s*<details>\s*<summary>(.*?)</summary>\s*$", re.IGNORECASE)
_DETAILS_CLOSE = re.compile(r"^\s*</details>\s*$", re.IGNORECASE)
_COMMENT_LINE = re.compile(r"^\s*<!--.*-->\s*$")
_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


@lru_cache(maxsize=1)
def _markdown() -> MarkdownIt:
    # html=False: raw HTML in the source is shown as text; links with javascript: and similar
    # schemes are not linked; images are off (no tracking pixels from a report).
    return MarkdownIt("commonmark", {"html": False}).enable(["table", "strikethrough"]).disable("image")


def render_report(markdown: str) -> Markup:
    """The report as safe HTML: CommonMark plus tables, with `<details><summary>` sections."""
    md = _markdown()
    out: list[str] = []
    pending: list[str] = []
    depth = 0
    fence: str | None = None

    def flush() -> None:
        if pending:
            out.append(md.render("\n".join(pending)))
            pending.clear()

    for line in markdown.splitlines():
        fenced = _FENCE.match(line)
        if fence is not None:
            pending.append(line)
            if fenced and fenced.group(1) == fence:
                fence = None
            continue
        if fenced:
            fence = fenced.group(1)
            pending.append(line)
        elif opened := _DETAILS_OPEN.match(line):
            flush()
            out.append(f"<details><summary>{md.renderInline(opened.group(1))}</summary>")
            depth += 1
        elif depth and _DETAILS_CLOSE.match(line):
            flush()
            out.append("</details>")
            depth -= 1
        elif not _COMMENT_LINE.match(line):
            pending.append(line)
    flush()
    out.append("</details>" * depth)
    return Markup("\n".join(out))  # only markdown-it output (html=False) and the fixed tags above


@dataclass(frozen=True)
class RunView:
    """A run as the page shows it."""

    run: Run
    forge_label: str
    merge_request: str  # "!3" on GitLab, "#2" on GitHub
    merge_request_url: str | None
    created: str
    started: str | None
    finished: str | None
    waited: str | None  # queued → started
    took: str | None  # started → finished (or until now, while running)
    live: bool
    report_html: Markup
    waiting_html: Markup | None  # what the run waits for (a lock, an approval, a worker)


def run_view(run: Run, config: ServerConfig, now: float | None = None) -> RunView:
    now = time.time() if now is None else now
    forge = FORGES.get(run.forge)
    live = run.status in ("queued", "running", "waiting")
    waited = _duration((run.started_at if run.started_at is not None else now) - run.created_at) \
        if run.started_at is not None or live else None
    took = None
    if run.started_at is not None:
        took = _duration((run.finished_at if run.finished_at is not None else now) - run.started_at)
    return RunView(
        run=run,
        forge_label=forge.title if forge else run.forge,
        merge_request=(forge.mr_label(run.number) if forge else f"#{run.number}") if run.number
        else "none (a build of a branch)",
        merge_request_url=_merge_request_url(run, config),
        created=_stamp(run.created_at) or "", started=_stamp(run.started_at),
        finished=_stamp(run.finished_at),
        waited=waited, took=took, live=live, report_html=render_report(run.report),
        waiting_html=_waiting(run))


def _waiting(run: Run) -> Markup | None:
    """What a run waits for, in words: its recorded reason (a lock's holder, an approval), or
    for a queued run a worker. Inline Markdown without HTML, like the report."""
    if run.waiting_for:
        return Markup(_markdown().renderInline(run.waiting_for))
    if run.status == "queued":
        return Markup("a worker to pick it up (<code>sluice worker</code> processes take runs in turn)")
    return None


@pages.get("/runs/<int:run_id>")
def run_page(run_id: int) -> Response:
    parts = sluice()
    run = _visible_run(run_id)
    if run is None:
        return _secure(Response(render_template("not_found.html.j2", what=f"run {run_id}"), status=404))
    view = run_view(run, parts.config)
    token = request.args.get("token", "")
    html = render_template("run.html.j2", view=view, run=run, refresh=REFRESH_SECONDS,
                           markdown_url=f"/runs/{run.id}.md?token={token}",
                           artifacts=artifact_links(run, parts.config, token))
    return _secure(Response(html, status=200, mimetype="text/html"))


@pages.get("/runs/<int:run_id>/<environment>/<name>")
def run_artifact(run_id: int, environment: str, name: str) -> Response:
    """A run's dbt-shaped artifact (runner/artifacts.py): manifest, run results, catalog."""
    parts = sluice()
    run = _visible_run(run_id)  # the artifacts are the run's: its link's token opens them
    if run is None or name not in ARTIFACTS or not is_environment_name(environment):
        return _secure(Response(f"no such artifact of run {run_id}\n", status=404, mimetype="text/plain"))
    path = parts.config.run_folder(run.id) / environment / name
    if not path.is_file():
        return _secure(Response(f"run {run_id} has no {name} for {environment}\n", status=404,
                                mimetype="text/plain"))
    return _secure(Response(path.read_bytes(), status=200, mimetype="application/json"))


def artifact_links(run: Run, config: ServerConfig, token: str) -> list[tuple[str, str]]:
    """(label, url) of the artifacts a run left, per environment, under the run's token."""
    folder = config.run_folder(run.id)
    if not folder.is_dir():
        return []
    return [(f"{env.name}/{name}", f"/runs/{run.id}/{env.name}/{name}?token={token}")
            for env in sorted(folder.iterdir()) if env.is_dir() and is_environment_name(env.name)
            for name in ARTIFACTS if (env / name).is_file()]


@pages.get("/runs/<int:run_id>.md")
def run_markdown(run_id: int) -> Response:
    run = _visible_run(run_id)
    if run is None:
        return _secure(Response(f"no run {run_id}\n", status=404, mimetype="text/plain"))
    return _secure(Response(run.report, status=200, mimetype="text/markdown"))


def _visible_run(run_id: int) -> Run | None:
    """The run, if the request carries its token; a wrong or missing token looks exactly like a
    run that does not exist, so ids say nothing."""
    if run_id > MAX_ID or not valid_token(sluice().config.link_key(), run_id, request.args.get("token")):
        return None
    return sluice().runs.get(run_id)


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


def _merge_request_url(run: Run, config: ServerConfig) -> str | None:
    forge, section = FORGES.get(run.forge), config.forge(run.forge)
    if forge is None or section is None or not run.number:
        return None
    return forge.merge_request_url(section, run.repository, run.number)


def _stamp(when: float | None) -> str | None:
    if when is None:
        return None
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(when))


def _duration(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"

