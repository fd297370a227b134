"""Proving a port: accuracy, reproducibility, performance and operator coverage, for any model family."""
