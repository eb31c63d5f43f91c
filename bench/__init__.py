"""Benchmarks: throughput and memory of a large run, and the cost of waiting (``./dev bench``)."""
