"""Sluice's edge: the command line today, the webhook service and forge adapters next."""
