"""Backends (registered by qexp.plugins.load_plugins)."""
