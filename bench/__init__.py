"""Benchmarks (not tests): `make bench` / `python -m bench.run`."""
