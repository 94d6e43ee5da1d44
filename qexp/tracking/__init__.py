"""Tracking sinks (registered by qexp.plugins.load_plugins)."""
