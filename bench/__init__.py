"""Benchmarks, run as modules from the repo root: ``python -m bench.run_all`` (``make bench``)."""
