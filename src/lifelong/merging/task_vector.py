"""Task vectors over state dicts: ``τ = θ_ft − θ_pre``, added, scaled and applied back to a base.

*Editing Models with Task Arithmetic* (arXiv 2212.04089). A :class:`TaskVector` holds one
tensor per floating-point key of a state dict; integer buffers (``num_batches_tracked``)
are not part of it and are copied from the base when a vector is applied.
:func:`check_compatible` is the one check every merge runs: same keys, same shapes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import torch

from lifelong.errors import ConfigError

_SHOWN = 5  # keys listed in an error message before "and N more"


def _listed(keys: Sequence[str]) -> str:
    keys = sorted(keys)
    more = f" and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else ""
    return ", ".join(keys[:_SHOWN]) + more


def check_compatible(
    base: Mapping[str, torch.Tensor], others: Sequence[Mapping[str, torch.Tensor]], names: Sequence[str] = ()
) -> None:
    """Raise :class:`ConfigError` unless every state dict of ``others`` has ``base``'s keys and shapes.

    ``names`` (one per entry of ``others``, e.g. file names) label the offending model in the message.
    """
    names = list(names) or [f"expert {i}" for i in range(len(others))]
    for name, other in zip(names, others):
        missing = [k for k in base if k not in other]
        extra = [k for k in other if k not in base]
        if missing or extra:
            raise ConfigError(
                f"{name} does not have the base model's keys (missing: {_listed(missing) or '-'}; "
                f"not in the base: {_listed(extra) or '-'}); merge only fine-tunes of the same base model, "
                f"or drop the differing keys (e.g. task heads) from every state dict first"
            )
        shapes = [
            f"{k} {tuple(other[k].shape)} vs base {tuple(base[k].shape)}"
            for k in base
            if other[k].shape != base[k].shape
        ]
        if shapes:
            raise ConfigError(
                f"{name} has tensors of other shapes than the base model: {_listed(shapes)}; "
                f"merge only fine-tunes of the same architecture"
            )


class TaskVector(Mapping):
    """A task vector: one tensor per floating-point key, supporting ``+``, ``-``, scalar ``*`` and :meth:`apply_to`.

    ``sum(vectors)`` works (``0 + τ`` is ``τ``). Operations between two vectors need the same keys and shapes.
    """

    __slots__ = ("_vector",)

    def __init__(self, vector: Mapping[str, torch.Tensor]):
        for key, value in vector.items():
            if not isinstance(value, torch.Tensor) or not value.is_floating_point():
                raise ConfigError(
                    f"task vector entry {key!r} is {getattr(value, 'dtype', type(value).__name__)}, not a "
                    f"floating-point tensor; build task vectors with TaskVector.between(base, finetuned)"
                )
        self._vector = dict(vector)

    @classmethod
    def between(cls, base: Mapping[str, torch.Tensor], finetuned: Mapping[str, torch.Tensor]) -> TaskVector:
        """``finetuned − base`` over the floating-point keys (after :func:`check_compatible`)."""
        check_compatible(base, [finetuned], ["the fine-tuned model"])
        with torch.no_grad():
            return cls({k: finetuned[k].detach() - v.detach() for k, v in base.items() if v.is_floating_point()})

    # Mapping protocol
    def __getitem__(self, key: str) -> torch.Tensor:
        return self._vector[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._vector)

    def __len__(self) -> int:
        return len(self._vector)

    def __repr__(self) -> str:
        return f"TaskVector({len(self)} tensors, {self.numel()} values)"

    def _zip(self, other: TaskVector) -> Iterator[tuple[str, torch.Tensor, torch.Tensor]]:
        if not isinstance(other, TaskVector):
            raise TypeError(f"a TaskVector combines with a TaskVector, not {type(other).__name__}")
        check_compatible(self._vector, [other._vector], ["the other task vector"])
        for key, value in self._vector.items():
            yield key, value, other._vector[key]

    def __add__(self, other: TaskVector) -> TaskVector:
        return TaskVector({k: a + b for k, a, b in self._zip(other)})

    def __radd__(self, other: object) -> TaskVector:
        if isinstance(other, (int, float)) and other == 0:  # sum() starts from 0
            return self
        return NotImplemented

    def __sub__(self, other: TaskVector) -> TaskVector:
        return TaskVector({k: a - b for k, a, b in self._zip(other)})

    def __neg__(self) -> TaskVector:
        return TaskVector({k: -v for k, v in self._vector.items()})

    def __mul__(self, scale: float) -> TaskVector:
        if not isinstance(scale, (int, float)) or isinstance(scale, bool):
            return NotImplemented
        return TaskVector({k: v * scale for k, v in self._vector.items()})

    __rmul__ = __mul__

    def numel(self) -> int:
        """Number of values over all tensors."""
        return sum(v.numel() for v in self._vector.values())

    def norm(self) -> float:
        """Euclidean norm over all tensors together."""
        return float(torch.sqrt(sum((v.double() ** 2).sum() for v in self._vector.values())))

    def apply_to(self, base: Mapping[str, torch.Tensor], scale: float = 1.0) -> dict[str, torch.Tensor]:
        """A new state dict ``base + scale · τ`` in ``base``'s dtypes; keys outside the vector are copied from ``base``.

        Raises:
            ConfigError: a key of the vector is missing from ``base`` or has another shape there.
        """
        missing = [k for k in self._vector if k not in base]
        if missing:
            raise ConfigError(
                f"the base state dict lacks keys of the task vector: {_listed(missing)}; apply it to the model "
                f"it was computed from"
            )
        out = {}
        with torch.no_grad():
            for key, value in base.items():
                tau = self._vector.get(key)
                if tau is None:
                    out[key] = value.detach().clone()
                    continue
                if tau.shape != value.shape:
                    raise ConfigError(
                        f"task vector entry {key!r} has shape {tuple(tau.shape)}, the base {tuple(value.shape)}; "
                        f"apply it to the model it was computed from"
                    )
                out[key] = (value.detach() + scale * tau.to(value.dtype)).to(value.dtype)
        return out


__all__ = ["TaskVector", "check_compatible"]
