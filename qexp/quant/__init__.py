"""Quantizers and observers; importing this package registers them."""
