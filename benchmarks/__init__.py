"""Ratio benchmarks of statestore against raw drivers (``python -m benchmarks``)."""
