"""Loading a data project: sluice.yml, models and their YAML, seeds, sources and tests; parsing; the DAG."""
