"""Losses: pure functions of tensors (never hold a model), one file per family."""
