"""Benchmarks: `python -m benchmarks.<name>` from the repo root."""
import generator  # noqa: F401  (first: OpenMP's passive wait is set before torch loads, as in a build)
