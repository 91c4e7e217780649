"""Benchmarks: each `bench_*.py` has `main() -> dict`; results are printed as ratios and saved as JSON."""
