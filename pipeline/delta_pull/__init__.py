"""Watermark delta pull and full-refresh import for sources that do not emit events."""
