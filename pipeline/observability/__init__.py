"""Metrics and structured logs shared by every Tally service."""
