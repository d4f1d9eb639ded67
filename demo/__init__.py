"""`make demo` (`python -m demo`): a local broker, the sidecar and simulated agents.

A development package next to `bench/` and `testbed/`: not part of the `sidecar` wheel.
"""
