"""Tests of the bot's parts: CLI, forges, intake, pages, report, server configuration, deploy files."""
