"""Experiments, one module each: its options, its scenarios, its load and faults, its hypothesis and report."""
