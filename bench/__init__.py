"""Benchmarks: scripts that time real workloads on a real database (not part of the test suite)."""
