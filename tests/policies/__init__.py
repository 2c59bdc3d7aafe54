"""Tests of policy-as-code."""
