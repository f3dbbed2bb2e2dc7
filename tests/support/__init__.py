"""Helpers that only tests use (shared by several test packages)."""
