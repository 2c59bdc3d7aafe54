"""Sluice's edge: the command line, the webhook service, the worker, the forges and the report.

It may import `runner` and `policies`; neither imports it."""
