"""Plans: the plan value (definition), the planner (builder), change categories and fingerprints.

Pure: no SQLAlchemy, no engine, no network. The state records it compares with are plain values.
"""
