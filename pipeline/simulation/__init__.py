"""Synthetic upstream traffic for the demo, the tests and the benchmarks."""
