"""Benchmarks of p2core-server, each measured against a baseline of the same run.

Run them all with ``python -m bench.run``; see ``bench/README.md``.
"""
