"""Tessera's benchmarks: ``python -m bench <name>``; each run prints JSON objects, one a line."""
