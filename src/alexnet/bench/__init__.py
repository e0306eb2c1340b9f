"""Benchmarks behind `alexnet bench`: each prints a table of measurements taken side by side."""
