"""HLE's rehearsal method (PL-FMS): hierarchy-aware pseudo-labels, pseudo-label memory, flexible sampling.

Online Continual Learning on Hierarchical Label Expansion (arXiv 2308.14374). Online rehearsal for streams
where coarse classes come first and fine classes below them later (:func:`lifelong.scenarios.hierarchical`):
every example gets a target at both levels (a fine pseudo-label from the model for coarse-labelled ones), a
class-balanced memory is keyed by (pseudo-)fine labels, and replay over-samples the current experience's new
classes. Pass ``parents=class_parents(stream)``; without ``parents`` it is ER with a class-balanced buffer.

Notes: docs/papers/hle.md
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from lifelong.errors import CheckpointError, ConfigError
from lifelong.heads.hierarchy import LevelSoftmax
from lifelong.methods.base import GradientConfig, GradientLearner
from lifelong.methods.config import hp
from lifelong.methods.registry import register

if TYPE_CHECKING:
    from lifelong.scenarios import Experience


@dataclass
class HLEConfig(GradientConfig):
    """HLE (PL-FMS) settings."""

    buffer_size: int = hp(200, "memory capacity in examples")
    replay_batch_size: int = hp(0, "memory examples replayed per step (0: same as the batch size)")
    parents: tuple[int, ...] = hp((), "coarse stream id of each stream class (-1: coarse); () = no hierarchy (ER)")
    new_class_weight: float = hp(2.0, "flexible memory sampling: weight of memory examples of new classes")
    pseudo_weight: float = hp(1.0, "weight of the fine loss on pseudo-labelled (coarse-labelled) examples")
    pseudo_label: bool = hp(True, "fine pseudo-labels for coarse-labelled examples (loss and memory keys)")

    def validate(self) -> None:
        """Raise :class:`~lifelong.errors.ConfigError` for a setting out of its range."""
        super().validate()
        if self.buffer_size < 1:
            raise ConfigError(f"buffer_size must be >= 1, got {self.buffer_size}")
        if self.replay_batch_size < 0:
            raise ConfigError(f"replay_batch_size must be >= 0, got {self.replay_batch_size}")
        if any(int(p) < -1 for p in self.parents):
            raise ConfigError("parents holds stream ids of coarse classes or -1; pass class_parents(stream)")
        if not self.new_class_weight > 0 or self.pseudo_weight < 0:
            raise ConfigError(
                f"new_class_weight must be > 0 and pseudo_weight >= 0, got "
                f"{self.new_class_weight}, {self.pseudo_weight}"
            )


@register("hle")
class HLE(GradientLearner):
    """Hierarchy-aware pseudo-labelling + pseudo-label balanced memory + flexible sampling (HLE, ICCV 2023)."""

    config_class = HLEConfig
    name = "hle"

    def __init__(self, config: HLEConfig, seed: int = 0):
        super().__init__(config, seed)
        self.size = 0
        self._mem_keys = torch.zeros(0, dtype=torch.long)

    def prepare(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        """Build the model, the hierarchy tensors and the preallocated memory."""
        c = self.config
        self.tree = LevelSoftmax(list(c.parents) or [-1] * num_classes, num_classes)  # checked before the model
        super().prepare(input_shape, num_classes)
        self.parent, self.is_fine, self.children = self.tree.parent, self.tree.is_fine, self.tree.children
        self.mem_x = torch.zeros((c.buffer_size, *self.input_shape))
        self.mem_y = torch.zeros(c.buffer_size, dtype=torch.long)
        self.size = 0
        self._mem_keys = torch.zeros(0, dtype=torch.long)
        self.key_seen = torch.zeros(num_classes, dtype=torch.long)
        self.first_exp = torch.full((num_classes,), -1, dtype=torch.long)

    # ---- pseudo-labels ------------------------------------------------------------
    def _targets(self, y: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(coarse target, fine target or -1) per example; fine targets of coarse-labelled ones are pseudo."""
        coarse_t, fine_t = self.tree.targets(y)
        if not self.config.pseudo_label:
            return coarse_t, fine_t
        allowed = self.children[y] & self.classes.seen  # seen fine children of a coarse label
        pseudo = scores.detach().masked_fill(~allowed, float("-inf")).argmax(1)
        pseudo = torch.where(allowed.any(1), pseudo, torch.full_like(y, -1))
        return coarse_t, torch.where(fine_t >= 0, fine_t, pseudo)

    def _keys(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Memory class key: the (pseudo-)fine label when there is one, else the label."""
        if not self.is_fine.any():
            return y
        with torch.no_grad():
            scores = self.model(x)
        _, fine_t = self._targets(y, scores)
        return torch.where(fine_t >= 0, fine_t, y)

    # ---- training -----------------------------------------------------------------
    def before_experience(self, experience: Experience) -> None:
        self._mem_keys = torch.zeros(0, dtype=torch.long)  # seen classes changed: recompute pseudo-labels
        new = torch.as_tensor(experience.classes, dtype=torch.long)
        new = new[self.first_exp[new] < 0]
        self.first_exp[new] = experience.index
        # a coarse class whose children appear now is also "new" for sampling
        kids = new[self.is_fine[new]]
        self.first_exp[self.parent[kids]] = torch.maximum(
            self.first_exp[self.parent[kids]], torch.tensor(experience.index)
        )

    def _sample(self, n: int) -> torch.Tensor:
        """Flexible memory sampling: memory rows, new-class keys weighted ``new_class_weight``."""
        n = min(n, self.size)
        keys = (
            self._mem_keys
            if len(self._mem_keys) == self.size
            else self._keys(self.mem_x[: self.size], self.mem_y[: self.size])
        )
        w = torch.ones(self.size)
        w[self.first_exp[keys] == self.experience_index] = self.config.new_class_weight
        return torch.multinomial(w, n, replacement=False, generator=self.generator)

    def loss(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> torch.Tensor:
        if self.size:
            idx = self._sample(self.config.replay_batch_size or len(y))
            x = torch.cat([x, self.mem_x[idx]])
            y = torch.cat([y, self.mem_y[idx]])
            self.samples_seen += len(idx)
        logits = self.model(x)
        _, fine_t = self._targets(y, logits)
        w = torch.where(self.is_fine[y], 1.0, self.config.pseudo_weight)
        return self.tree.loss(logits, y, self.classes.seen, fine_targets=fine_t, fine_weights=w)

    def after_step(self, x: torch.Tensor, y: torch.Tensor, experience: Experience) -> None:
        """Pseudo-label based class-balanced memory update (new classes always admitted)."""
        cap = self.config.buffer_size
        both = self._keys(torch.cat([self.mem_x[: self.size], x]), torch.cat([self.mem_y[: self.size], y]))
        mem_keys, keys_in = both[: self.size].tolist(), both[self.size :].tolist()
        counts = torch.bincount(both[: self.size], minlength=self.num_classes).tolist()
        draws = torch.rand(len(y), generator=self.generator, dtype=torch.float64).tolist()
        picks = torch.rand(len(y), generator=self.generator, dtype=torch.float64).tolist()
        self.key_seen += torch.bincount(both[self.size :], minlength=self.num_classes)
        seen = self.key_seen.tolist()
        slots, rows = [], []
        for i, k in enumerate(keys_in):  # sequential by definition (CBRS); plain Python on small lists
            if len(mem_keys) < cap:
                slot = len(mem_keys)
                mem_keys.append(k)
            else:
                largest = max(counts)
                if counts[k] < largest:
                    victims = [j for j, m in enumerate(mem_keys) if counts[m] == largest]
                elif draws[i] < counts[k] / seen[k]:
                    victims = [j for j, m in enumerate(mem_keys) if m == k]
                else:
                    continue
                slot = victims[int(picks[i] * len(victims))]
                counts[mem_keys[slot]] -= 1
                mem_keys[slot] = k
            counts[k] += 1
            slots.append(slot)
            rows.append(i)
        if slots:  # a slot written twice keeps the later row, as in sequential order
            last = {s: r for s, r in zip(slots, rows)}
            s_t, r_t = torch.tensor(list(last)), torch.tensor(list(last.values()))
            self.mem_x[s_t] = x[r_t].detach()
            self.mem_y[s_t] = y[r_t]
        self.size = len(mem_keys)
        self._mem_keys = torch.tensor(mem_keys, dtype=torch.long)

    # ---- inference ----------------------------------------------------------------
    @torch.inference_mode()
    def predict(self, x: torch.Tensor, task_id: int | None = None) -> torch.Tensor:
        """Per-level log-probabilities over the seen classes (raw scores without a hierarchy)."""
        if self.model is None:
            return torch.empty(len(x), 0)
        was = self.model.training
        self.model.eval()
        s = self.model(x)
        self.model.train(was)
        if self.is_fine.any():
            s = self.tree.log_probs(s, self.classes.seen)
        return self.classes.mask(s, task_id)

    # ---- state --------------------------------------------------------------------
    def extra_state(self) -> dict:
        return {
            "mem_x": self.mem_x.clone(),
            "mem_y": self.mem_y.clone(),
            "size": self.size,
            "key_seen": self.key_seen.clone(),
            "first_exp": self.first_exp.clone(),
        }

    def load_extra_state(self, state: dict) -> None:
        if tuple(state["mem_x"].shape) != tuple(self.mem_x.shape):
            raise CheckpointError(
                f"memory of shape {tuple(state['mem_x'].shape)} in the checkpoint differs from "
                f"the configured {tuple(self.mem_x.shape)}"
            )
        self.mem_x, self.mem_y = state["mem_x"].clone(), state["mem_y"].clone()
        self.size = int(state["size"])
        self.key_seen, self.first_exp = state["key_seen"].clone(), state["first_exp"].clone()
        self._mem_keys = torch.zeros(0, dtype=torch.long)  # recomputed at the next step
