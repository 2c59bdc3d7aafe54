"""Sluice's test suites: runner/, bot/, policies/, e2e/ (through the web app and workers),
support/ (fake forges, warehouse, repository and service helpers) and fixtures/."""
