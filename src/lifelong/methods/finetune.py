"""Naive fine-tuning: train on each experience in turn, nothing against forgetting.

The lower bound of every continual-learning comparison.
"""

from dataclasses import dataclass

from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.registry import register


@dataclass
class FinetuneConfig(GradientConfig):
    """Fine-tuning uses only the shared gradient settings."""


@register("finetune")
class Finetune(GradientLearner):
    """Sequential fine-tuning with cross-entropy over the classes seen so far."""

    config_class = FinetuneConfig
