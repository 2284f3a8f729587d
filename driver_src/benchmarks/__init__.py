"""Benchmarks of the driver; run on purpose (python -m benchmarks.<name>), never by pytest."""
