"""Tests of the runner: loading, planning, building, promotion, lineage, review, state."""
