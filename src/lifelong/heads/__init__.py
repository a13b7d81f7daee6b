"""Classifier heads and the backbone + head module."""

from lifelong.heads.classifier import Classifier

__all__ = ["Classifier"]
