"""Classifier heads and the backbone + head module."""

from lifelong.heads.classifier import Classifier
from lifelong.heads.hierarchy import LevelSoftmax

__all__ = ["Classifier", "LevelSoftmax"]
