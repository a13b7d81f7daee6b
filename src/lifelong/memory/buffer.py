"""Replay buffers.

:class:`ReservoirBuffer` keeps a uniform sample of everything it was offered (reservoir sampling, Vitter 1985),
inserting a whole batch with tensor operations. :class:`ClassBalancedBuffer` is class-balanced reservoir sampling
(CBRS; Chrysakis & Moens, ICML 2020): when full, a new example replaces one from the currently largest class,
or, if its own class is the largest, one of its own class with probability (stored / seen) of that class. Both
store inputs, labels and optional named extras in preallocated tensors, allocated on the first insertion.
"""

from __future__ import annotations

import torch

from lifelong.errors import CheckpointError, ConfigError


class _TensorStore:
    """Preallocated storage of ``capacity`` rows for x, y and named extras."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ConfigError(f"buffer capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self.size = 0
        self.tensors: dict[str, torch.Tensor] = {}

    def _allocate(self, batch: dict[str, torch.Tensor]) -> None:
        for k, v in batch.items():
            if k not in self.tensors:
                self.tensors[k] = torch.zeros((self.capacity, *v.shape[1:]), dtype=v.dtype)

    def write(self, slots: torch.Tensor, batch: dict[str, torch.Tensor], rows: torch.Tensor) -> None:
        self._allocate(batch)
        for k, v in batch.items():
            self.tensors[k][slots] = v[rows].detach().to(self.tensors[k].dtype)

    def __len__(self) -> int:
        return self.size

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Up to ``n`` stored rows drawn uniformly without replacement."""
        n = min(n, self.size)
        idx = torch.randperm(self.size, generator=generator)[:n]
        return {k: v[idx] for k, v in self.tensors.items()}

    def all(self) -> dict[str, torch.Tensor]:
        """Every stored row."""
        return {k: v[: self.size] for k, v in self.tensors.items()}

    def state_dict(self) -> dict:
        return {
            "capacity": self.capacity,
            "size": self.size,
            "tensors": {k: v.clone() for k, v in self.tensors.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        if int(state["capacity"]) != self.capacity:
            raise CheckpointError(
                f"buffer capacity {state['capacity']} in the checkpoint differs from the configured {self.capacity}"
            )
        self.size = int(state["size"])
        self.tensors = {k: v.clone() for k, v in state["tensors"].items()}


class ReservoirBuffer(_TensorStore):
    """Uniform reservoir over every example offered with :meth:`add`."""

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.seen = 0

    def add(self, generator: torch.Generator, **batch: torch.Tensor) -> None:
        """Offer a batch (``x=..., y=..., <extra>=...``, equal first dimensions)."""
        n = next(iter(batch.values())).shape[0]
        pos = self.seen + torch.arange(n)
        # Reservoir: the example at stream position p takes slot p while there is room,
        # otherwise slot r ~ U{0..p} if r < capacity.
        r = (torch.rand(n, generator=generator, dtype=torch.float64) * (pos + 1)).long()
        slots = torch.where(pos < self.capacity, pos, r)
        accepted = torch.nonzero(slots < self.capacity).flatten()
        if len(accepted):
            s = slots[accepted]
            # Several rows of one batch may hit one slot: the later row wins, as in sequential order.
            rev = s.flip(0)
            uniq, inv = torch.unique(rev, return_inverse=True)
            first = torch.full((len(uniq),), len(rev), dtype=torch.long).scatter_reduce(
                0, inv, torch.arange(len(rev)), reduce="amin"
            )
            rows = accepted.flip(0)[first]
            self.write(slots[rows], batch, rows)
        self.seen += n
        self.size = min(self.capacity, self.seen)

    def state_dict(self) -> dict:
        """The stored examples and the count of examples offered so far."""
        return {**super().state_dict(), "seen": self.seen}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(state)
        self.seen = int(state["seen"])


class ClassBalancedBuffer(_TensorStore):
    """Class-balanced reservoir sampling (CBRS). Requires a ``y`` entry in every batch.

    Each example costs O(1) bookkeeping (per-class slot lists); the loop runs over
    the examples of a batch because CBRS is defined sequentially.
    """

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.class_slots: dict[int, list[int]] = {}
        self.class_seen: dict[int, int] = {}

    def add(self, generator: torch.Generator, **batch: torch.Tensor) -> None:
        """Offer a batch (``x=..., y=..., <extra>=...``)."""
        ys = batch["y"].tolist()
        draws = torch.rand(len(ys), generator=generator, dtype=torch.float64).tolist()
        picks = torch.rand(len(ys), generator=generator, dtype=torch.float64).tolist()
        slots, rows = [], []
        for i, c in enumerate(ys):
            self.class_seen[c] = self.class_seen.get(c, 0) + 1
            own = self.class_slots.setdefault(c, [])
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
                own.append(slot)
            else:
                largest = max(len(v) for v in self.class_slots.values())
                if len(own) < largest:
                    # Take a random slot from one of the largest classes.
                    big = [k for k, v in self.class_slots.items() if len(v) == largest]
                    victim = big[int(picks[i] * len(big))]
                    vs = self.class_slots[victim]
                    j = int(draws[i] * len(vs))
                    slot = vs[j]
                    vs[j] = vs[-1]
                    vs.pop()
                    own.append(slot)
                elif draws[i] < len(own) / self.class_seen[c]:
                    slot = own[int(picks[i] * len(own))]
                else:
                    continue
            slots.append(slot)
            rows.append(i)
        if slots:
            s, r = torch.tensor(slots), torch.tensor(rows)
            # keep the last write per slot
            rev = s.flip(0)
            uniq, inv = torch.unique(rev, return_inverse=True)
            first = torch.full((len(uniq),), len(rev), dtype=torch.long).scatter_reduce(
                0, inv, torch.arange(len(rev)), reduce="amin"
            )
            keep = torch.arange(len(s)).flip(0)[first]
            self.write(s[keep], batch, r[keep])

    def state_dict(self) -> dict:
        """The stored examples with each class's slots and examples seen."""
        return {
            **super().state_dict(),
            "class_slots": {str(k): list(v) for k, v in self.class_slots.items()},
            "class_seen": {str(k): v for k, v in self.class_seen.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(state)
        self.class_slots = {int(k): list(v) for k, v in state["class_slots"].items()}
        self.class_seen = {int(k): int(v) for k, v in state["class_seen"].items()}


def make_buffer(kind: str, capacity: int) -> ReservoirBuffer | ClassBalancedBuffer:
    """``"reservoir"`` or ``"class-balanced"`` buffer of ``capacity`` examples."""
    kinds = {"reservoir": ReservoirBuffer, "class-balanced": ClassBalancedBuffer}
    if kind not in kinds:
        from lifelong.errors import unknown_name

        raise unknown_name("buffer", kind, kinds)
    return kinds[kind](capacity)
