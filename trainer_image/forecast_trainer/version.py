"""The trainer's version (a module of its own: importable even through a namespace-package path)."""

__version__ = "0.1.0"
