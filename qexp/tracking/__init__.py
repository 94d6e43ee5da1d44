"""Tracking sinks; importing this package registers them."""
