"""Hostile and malformed inputs, built at test time (no binary fixtures are committed)."""
