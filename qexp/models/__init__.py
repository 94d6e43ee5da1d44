"""Detector families; importing this package registers them."""
