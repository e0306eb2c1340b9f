"""Pretrained weights: the registry, the importers and the cache."""
