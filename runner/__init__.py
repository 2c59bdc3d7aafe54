"""Sluice's runner: load a SQL project, plan it against an environment, build, test and promote."""
