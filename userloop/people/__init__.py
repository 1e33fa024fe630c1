"""Persons: identities, profile properties (and later tags, segments, layers)."""
