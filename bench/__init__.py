"""Benchmarks: one script per question, run with `python -m bench.<name>`; see docs/BENCHMARKS.md."""
