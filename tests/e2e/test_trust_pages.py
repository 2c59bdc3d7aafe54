"""No `pii`-tagged value reaches a run page, the raw report, a `/diff` answer or the thread: failing
tests' sample rows and data diff samples are masked by the one rule (`pii_columns`, `***`), on
GitLab and GitHub, through the links the bot writes."""

from __future__ import annotations

from bot.records.runs import RunKind
from tests.support.e2e import Bot, Forge, build_production, path, run_page, runs_of
from tests.support.repos import Origin, git

EMAIL = "dan.abbott1@shop.test"  # customer 1's address in the demo seed (marts.customers.email: pii)
LEAKY = {
    # customer 1 loses its id: the not_null test of marts.customers.customer_id fails on that row
    "models/marts/customers.sql": ("    c.customer_id,\n    c.first_name,",
                                   "    case when c.customer_id = 1 then null else c.customer_id end"
                                   " as customer_id,\n    c.first_name,"),
}
# A singular test may name its columns anything: reading a model with a tagged column, all of its
# sample values are masked.
SINGULAR = "select email as contact, first_name from marts.customers where email like 'dan.%'\n"


def test_pii_values_never_reach_pages_reports_or_the_thread(forge: Forge, origin: Origin, bot: Bot):
    build_production(bot, forge, origin)
    origin.branch("leaky", LEAKY)
    (origin.work / "tests" / "contact_is_known.sql").write_text(SINGULAR)
    git(origin.work, "add", "-A")
    sha = origin.commit("leaky", {})
    assert bot.deliver(forge.open(1, sha, "leaky"), path(forge)) == 202
    bot.settle()
    [pipeline] = runs_of(bot, forge, 1, RunKind.PIPELINE)
    assert "failing" in pipeline.report and "not_null" in pipeline.report
    assert "contact_is_known" in pipeline.report
    assert "***" in pipeline.report and "Dan" not in pipeline.report.split("contact_is_known")[1][:400]

    assert bot.deliver(forge.comment(1, "/diff marts.customers --limit 20"), path(forge)) == 202
    bot.settle()
    [diff] = [r for r in runs_of(bot, forge, 1) if r.command and r.command.startswith("/diff")]

    md = bot.client.get(bot.config.run_path(pipeline.id).replace("?", ".md?")).get_data(as_text=True)
    for text in (run_page(bot, pipeline.id), md, run_page(bot, diff.id), diff.report,
                 *forge.comments(1)):
        assert EMAIL not in text
    assert "***" in run_page(bot, pipeline.id)
