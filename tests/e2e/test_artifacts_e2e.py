"""The bot leaves dbt-shaped artifacts of the merge request's environment in the run's folder,
and the run page a merge request links to offers them (GitLab and GitHub, real worker and Redis)."""

from __future__ import annotations

import json
from pathlib import Path

from dbt.artifacts.schemas.catalog import CatalogArtifact
from dbt.artifacts.schemas.manifest import WritableManifest
from dbt.artifacts.schemas.run import RunResultsArtifact

from bot.records.runs import RunLog
from tests.support.e2e import ORDERS, Bot, Forge, build_production, path
from tests.support.repos import Origin


def test_a_merge_request_run_leaves_the_environments_artifacts(forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    sha = origin.branch("orders-amount", ORDERS)
    assert bot.deliver(forge.open(1, sha, "orders-amount"), path(forge)) == 202
    bot.settle()
    [run] = [r for r in RunLog(bot.worker.services.state).for_merge_request(forge.name, forge.repo, 1)
             if r.kind == "pipeline"]

    folder: Path = bot.config.run_folder(run.id) / "mr_1"
    for name, cls in (("manifest.json", WritableManifest), ("run_results.json", RunResultsArtifact),
                      ("catalog.json", CatalogArtifact)):
        cls.read_and_check_versions(str(folder / name))
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["nodes"]["model.shop.orders"]["relation_name"].endswith('"marts__mr_1"."orders"')
    results = {r["unique_id"]: r["status"] for r in
               json.loads((folder / "run_results.json").read_text())["results"]}
    assert results["model.shop.orders"] == "success"

    link = bot.config.run_path(run.id)  # the link the bot posts, with the run's token
    token = link.split("?token=", 1)[1]
    page = bot.client.get(link).get_data(as_text=True)
    assert f'href="/runs/{run.id}/mr_1/catalog.json?token={token}"' in page
    served = bot.client.get(f"/runs/{run.id}/mr_1/manifest.json?token={token}")
    assert served.status_code == 200 and served.get_json()["metadata"] == manifest["metadata"]
