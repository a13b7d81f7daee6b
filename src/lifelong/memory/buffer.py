"""Replay buffers.

:class:`ReservoirBuffer` keeps a uniform sample of everything it was offered (reservoir sampling, Vitter 1985),
inserting a whole batch with tensor operations. :class:`ClassBalancedBuffer` is class-balanced reservoir sampling
(CBRS; Chrysakis & Moens, ICML 2020): when full, a new example replaces one from the currently largest class,
or, if its own class is the largest, one of its own class with probability (stored / seen) of that class. Both
store inputs, labels and optional named extras in preallocated tensors, allocated on the first insertion.
:class:`ExperienceBalancedBuffer` gives every experience an equal share of the slots (the default policy of
Avalanche's ``ExperienceBalancedBuffer``): the capacity is re-split when a new experience starts
(:meth:`new_experience`), and within an experience examples enter by reservoir sampling.
:class:`GreedyClassBalancedBuffer` is GDumb's greedy class-balanced sampler (Prabhu et al., ECCV 2020).
Every buffer has ``new_experience(index, generator)``; replay methods call it from ``before_experience``
(a no-op for the policies that ignore experiences).
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

    def new_experience(self, experience: int, generator: torch.Generator) -> None:
        """Hook called when experience ``experience`` starts; this policy ignores experiences."""

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


def _last_write_per_slot(slots: torch.Tensor) -> torch.Tensor:
    """Positions in ``slots`` of the last occurrence of each distinct slot (later writes win, as sequentially)."""
    rev = slots.flip(0)
    uniq, inv = torch.unique(rev, return_inverse=True)
    first = torch.full((len(uniq),), len(rev), dtype=torch.long).scatter_reduce(
        0, inv, torch.arange(len(rev)), reduce="amin"
    )
    return (len(slots) - 1) - first


class _SlotStore(_TensorStore):
    """A tensor store whose rows are owned by groups (experiences, classes); free rows may lie anywhere.

    ``owner[slot]`` is the group id holding a slot, or -1 when the slot is free.
    """

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.owner = torch.full((self.capacity,), -1, dtype=torch.long)

    def _stored(self) -> torch.Tensor:
        return torch.nonzero(self.owner >= 0).flatten()

    def sample(self, n: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """Up to ``n`` stored rows drawn uniformly without replacement."""
        rows = self._stored()
        idx = rows[torch.randperm(len(rows), generator=generator)[: min(n, len(rows))]]
        return {k: v[idx] for k, v in self.tensors.items()}

    def all(self, group: int | None = None) -> dict[str, torch.Tensor]:
        """Every stored row (in slot order), or only those of ``group``."""
        rows = self._stored() if group is None else torch.nonzero(self.owner == group).flatten()
        return {k: v[rows] for k, v in self.tensors.items()}

    def groups(self) -> list[int]:
        """The group ids holding at least one row, ascending."""
        return self.owner[self.owner >= 0].unique().tolist()

    def state_dict(self) -> dict:
        """The stored rows and each slot's owner."""
        return {**super().state_dict(), "owner": self.owner.clone()}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(state)
        self.owner = state["owner"].to(torch.long).clone()


class ExperienceBalancedBuffer(_SlotStore):
    """Equal slots per experience; reservoir sampling within each experience.

    When experience ``e`` starts (:meth:`new_experience`), the capacity is split into equal
    quotas over the experiences seen so far (the remainder to the earliest ones, as
    Avalanche's ``ExperienceBalancedBuffer``), and an experience holding more than its new
    quota drops a uniformly random subset of its rows, so what stays is still a uniform
    sample of everything it was offered. :meth:`add` offers a batch to the current
    experience (one is opened at index 0 if none was). :meth:`all` and :meth:`groups` give
    the rows of each experience (for per-task gradients, as in GEM).
    """

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.quota: dict[int, int] = {}
        self.offered: dict[int, int] = {}
        self.current: int | None = None

    def new_experience(self, experience: int, generator: torch.Generator) -> None:
        """Open experience ``experience`` and re-split the capacity equally over every experience so far."""
        experience = int(experience)
        self.current = experience
        if experience in self.quota:
            return
        self.quota[experience] = 0
        self.offered[experience] = 0
        order = sorted(self.quota)
        share, rem = divmod(self.capacity, len(order))
        for i, e in enumerate(order):
            self.quota[e] = share + (1 if i < rem else 0)
            rows = torch.nonzero(self.owner == e).flatten()
            if len(rows) > self.quota[e]:
                drop = rows[torch.randperm(len(rows), generator=generator)[self.quota[e] :]]
                self.owner[drop] = -1
        self.size = int((self.owner >= 0).sum())

    def add(self, generator: torch.Generator, **batch: torch.Tensor) -> None:
        """Offer a batch (``x=..., y=..., <extra>=...``) to the current experience's reservoir."""
        if self.current is None:
            self.new_experience(0, generator)
        e, q = self.current, self.quota[self.current]
        n = next(iter(batch.values())).shape[0]
        mine = torch.nonzero(self.owner == e).flatten()
        stored = len(mine)
        pos = self.offered[e] + torch.arange(n)
        r = (torch.rand(n, generator=generator, dtype=torch.float64) * (pos + 1)).long()
        # The first (q - stored) rows fill free slots; later rows replace one of the
        # experience's q slots with probability q / (position + 1), as reservoir sampling.
        fill = min(max(q - stored, 0), n)
        free = torch.nonzero(self.owner < 0).flatten()[:fill]
        own_slots = torch.cat([mine, free])
        local = torch.where(torch.arange(n) < fill, stored + torch.arange(n), r)
        accepted = torch.nonzero(local < min(q, len(own_slots))).flatten()
        if len(accepted):
            slots = own_slots[local[accepted]]
            keep = _last_write_per_slot(slots)
            self.write(slots[keep], batch, accepted[keep])
            self.owner[slots[keep]] = e
        self.offered[e] += n
        self.size = int((self.owner >= 0).sum())

    def state_dict(self) -> dict:
        """The stored rows, owners, each experience's quota and count offered, and the current experience."""
        return {
            **super().state_dict(),
            "quota": {str(k): v for k, v in self.quota.items()},
            "offered": {str(k): v for k, v in self.offered.items()},
            "current": -1 if self.current is None else self.current,
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(state)
        self.quota = {int(k): int(v) for k, v in state["quota"].items()}
        self.offered = {int(k): int(v) for k, v in state["offered"].items()}
        self.current = None if int(state["current"]) < 0 else int(state["current"])


class GreedyClassBalancedBuffer(_SlotStore):
    """GDumb's greedy class-balanced sampler (Prabhu et al., "GDumb", ECCV 2020, Alg. 1). Requires ``y``.

    An example is stored while there is room; when full, it is stored only if its class holds
    fewer than ``capacity / classes seen`` rows, replacing a random row of a largest class.
    Sequential by definition: the loop runs over the examples of a batch with O(1) work each.
    """

    def __init__(self, capacity: int):
        super().__init__(capacity)
        self.class_slots: dict[int, list[int]] = {}

    def add(self, generator: torch.Generator, **batch: torch.Tensor) -> None:
        """Offer a batch (``x=..., y=..., <extra>=...``)."""
        ys = batch["y"].tolist()
        picks = torch.rand(len(ys), generator=generator, dtype=torch.float64).tolist()
        slots, rows = [], []
        for i, c in enumerate(ys):
            own = self.class_slots.setdefault(c, [])
            if self.size < self.capacity:
                slot = self.size
                self.size += 1
            elif len(own) < self.capacity / len(self.class_slots):
                largest = max(len(v) for v in self.class_slots.values())
                victim = min(k for k, v in self.class_slots.items() if len(v) == largest)
                vs = self.class_slots[victim]
                j = int(picks[i] * len(vs))
                slot = vs[j]
                vs[j] = vs[-1]
                vs.pop()
            else:
                continue
            own.append(slot)
            slots.append(slot)
            rows.append(i)
        if slots:
            s, r = torch.tensor(slots), torch.tensor(rows)
            keep = _last_write_per_slot(s)
            self.write(s[keep], batch, r[keep])
            self.owner[s[keep]] = batch["y"][r[keep]].long()

    def state_dict(self) -> dict:
        """The stored rows with each class's slots."""
        return {**super().state_dict(), "class_slots": {str(k): list(v) for k, v in self.class_slots.items()}}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`."""
        super().load_state_dict(state)
        self.class_slots = {int(k): [int(s) for s in v] for k, v in state["class_slots"].items()}


#: the policies :func:`make_buffer` builds, by name
BUFFER_KINDS = ("reservoir", "class-balanced", "experience-balanced")


def make_buffer(kind: str, capacity: int) -> ReservoirBuffer | ClassBalancedBuffer | ExperienceBalancedBuffer:
    """A ``"reservoir"``, ``"class-balanced"`` or ``"experience-balanced"`` buffer of ``capacity`` examples."""
    kinds = {
        "reservoir": ReservoirBuffer,
        "class-balanced": ClassBalancedBuffer,
        "experience-balanced": ExperienceBalancedBuffer,
    }
    if kind not in kinds:
        from lifelong.errors import unknown_name

        raise unknown_name("buffer", kind, kinds)
    return kinds[kind](capacity)
