"""Connections to issue trackers: import by query, and the final estimate sent back."""
