"""Datasets and fleets through Ray: many rows over many devices, and the validation grid over many nodes."""
