"""Renderers: turn a Report into text. The library never prints; the CLI does."""
