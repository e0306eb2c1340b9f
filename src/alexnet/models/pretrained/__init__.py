"""Trained ImageNet weights from other frameworks, converted to this package's nets."""
