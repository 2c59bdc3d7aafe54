"""Secrets never leak: a run that used a forge token, a webhook secret and a database password
leaves none of them in logs, run logs, reports, comments or statuses."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
from pathlib import Path

import redis

from bot.logs import JsonFormatter, Redactor, _RedactingFilter, log_context, secrets_of
from runner.runlog import RunLog
from test_bot_e2e import CUSTOMERS, ORDERS, Bot, Forge, Origin, build_production, redis_db, server_config
from test_bot_e2e import forge, origin  # noqa: F401  (fixtures)

PASSWORD = "pg-pa55word-XYZ"


def test_no_secret_in_any_output(tmp_path: Path, forge: Forge, origin: Origin):
    redis.Redis(db=redis_db()).flushdb()
    config = server_config(tmp_path, forge, origin)
    # A warehouse URL and a state URL that carry a password; the forge has a token and a secret.
    config = dataclasses.replace(config, warehouses={"default": config.warehouses["default"],
                                                     "other": f"postgresql://sluice:{PASSWORD}@10.9.9.9/x"})
    secrets = secrets_of(config)
    assert PASSWORD in secrets and forge.fake.token in secrets and forge.fake.webhook_secret in secrets

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_RedactingFilter(Redactor(secrets)))
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    root.setLevel(logging.INFO)
    bot = Bot(config)
    bot.worker.start()
    try:
        build_production(bot, forge, origin)
        sha = origin.branch("leaky", {**ORDERS, **CUSTOMERS})
        assert bot.deliver(forge.open(1, sha, "leaky"), f"/webhooks/{forge.name}") == 202
        bot.settle()
        # A message that tries to echo secrets back (a log line and a comment).
        logging.getLogger("sluice.test").info("token %s and url https://oauth2:%s@host/x.git",
                                              forge.fake.token, forge.fake.token)
        with log_context(run=1, mr="data/shop!1", sha="abc"):
            logging.getLogger("sluice.test").warning("connecting with %s", PASSWORD)
        RunLog(bot.worker.services.state, bot.worker.services.redact).append_log(
            1, f"oops {forge.fake.token} {PASSWORD}")
        bot.worker.services.forges[forge.name].post_comment(forge.repo, 1, f"echo {forge.fake.token}")
    finally:
        bot.worker.stop()
        root.removeHandler(handler)
        root.setLevel(old_level)

    outputs = [stream.getvalue()]
    outputs += [c.body for c in forge.fake.comments(forge.repo, 1)]
    outputs += [json.dumps(s) for s in forge.fake.statuses(forge.repo, sha)]
    for run in bot.worker.jobs.runs.for_merge_request(forge.name, forge.repo, 1):
        outputs += [run.log, run.report, run.summary, run.policy or ""]
    text = "\n".join(outputs)
    assert "data/shop!1" in stream.getvalue() and '"run": 1' in stream.getvalue()  # context fields
    for secret in secrets:
        assert secret not in text, f"a secret leaked: {secret[:3]}…"
    assert "***" in text
