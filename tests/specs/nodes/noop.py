"""Placeholder node for spec tests."""
