"""Benchmark scripts (not tests): run each from the repository root as `python -m benchmarks.NAME --help`.

The numbers they print belong in BENCHMARKS.md, never in the test suite; tests/test_benchmarks.py only checks
that every script still runs on the tiny config.
"""
