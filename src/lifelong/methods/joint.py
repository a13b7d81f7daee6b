"""Joint training: at each experience, train on the union of all experiences so far.

The usual upper bound (it stores everything). Stores experiences, i.e. index
arrays into the dataset, not copies of the data.
"""

from dataclasses import dataclass

import torch

from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register
from lifelong.scenarios import Experience


@dataclass
class JointConfig(GradientConfig):
    """Joint training settings."""

    reinit: bool = hp(False, "re-initialise the model before each experience (train from scratch on the union)")


@register("joint")
class Joint(GradientLearner):
    """Cumulative joint training on every experience seen so far."""

    config_class = JointConfig

    def __init__(self, config: JointConfig, seed: int = 0):
        super().__init__(config, seed)
        self.past: list[Experience] = []

    def fit(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        if self.config.reinit and self.past:
            self.prepare(self.input_shape, self.num_classes)
            self.classes.observe(experience, y)
            for e in self.past:
                self.classes.observe(e, e.train_tensors()[1])
        parts = [e.train_tensors() for e in self.past] + [(x, y)]
        self.past.append(experience)
        xs, ys = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        super().fit(xs, ys, experience)

    def extra_state(self) -> dict:
        # Past experiences are re-derived from the stream on resume (see load_extra_state).
        return {"past": [e.index for e in self.past]}

    def load_extra_state(self, state: dict) -> None:
        self._past_indices = list(state["past"])

    def attach_stream(self, stream) -> None:
        """Re-link stored past experiences to ``stream`` after loading a checkpoint."""
        idx = getattr(self, "_past_indices", None)
        if idx is not None:
            self.past = [stream[i] for i in idx]
