"""Quantizers and observers (registered by qexp.plugins.load_plugins)."""
