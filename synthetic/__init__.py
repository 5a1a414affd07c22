"""Synthetic multi-domain interaction logs for tests and benchmarks (see generator.py)."""
