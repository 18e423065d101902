"""Thin Trainer subclasses and their callbacks."""
