"""Backbones that map inputs to feature vectors."""

from lifelong.encoders.mlp import MLP

__all__ = ["MLP"]
