"""Benchmarks: run each file as a script (see README.md, "Benchmarks")."""
