"""Internals of the xenvm tool (see ../README.md)."""
