"""Detector families (registered by qexp.plugins.load_plugins)."""
