"""Backends; importing this package registers them."""
