"""Shared core: the project spec, data I/O, column typing and errors."""
