"""The package version, in a module of its own so that any layer can read it without importing the package's
public API (led_hf/__init__.py re-exports it)."""

__version__ = "0.1.0"
