"""Hostile input: what a merge request could send, each refused in one line before anything runs."""
