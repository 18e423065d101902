"""Batch contracts: training groups, encoding, cross-encoder pairs."""
