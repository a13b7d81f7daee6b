"""Chunked hypernetworks: a network that generates another network's weights from a task embedding.

:class:`HyperNetwork` maps a learned task embedding (plus a learned chunk embedding) to the target
weights chunk by chunk, with an MLP (HNET, Continual learning with hypernetworks, arXiv 1906.00695)
or an LSTM over the chunks (DPHN, arXiv 2209.07712); :class:`TargetNet` runs an MLP with those weights.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def target_shapes(in_dim: int, hidden: tuple[int, ...], num_classes: int) -> list[tuple[int, ...]]:
    """Shapes of the target MLP's parameters in generation order: W1, b1, W2, b2, ..."""
    dims = [in_dim, *hidden, num_classes]
    out: list[tuple[int, ...]] = []
    for a, b in zip(dims[:-1], dims[1:]):
        out += [(b, a), (b,)]
    return out


class HyperNetwork(nn.Module):
    """Chunked hypernetwork (MLP or LSTM body) plus the task embeddings and growth terms.

    ``generate(emb, grow_a, grow_b)`` maps ``B`` task embeddings ``(B, emb_dim)`` to ``B``
    flat target weight vectors. The embedding (and growth term) of the task being
    learned are the parameters ``task_emb`` (``grow_a``, ``grow_b``); every task slot's
    are stored in the buffers ``emb_bank`` (``grow_a_bank``, ``grow_b_bank``).
    """

    def __init__(
        self,
        n_out: int,
        *,
        kind: str,
        emb_dim: int,
        chunk_size: int,
        chunk_emb_dim: int,
        mlp_hidden: tuple[int, ...],
        lstm_hidden: int,
        growth_rank: int,
        max_tasks: int,
    ):
        super().__init__()
        self.kind, self.n_out, self.chunk_size = kind, n_out, chunk_size
        self.n_chunks = math.ceil(n_out / chunk_size)
        self.chunk_emb = nn.Parameter(torch.randn(self.n_chunks, chunk_emb_dim)) if chunk_emb_dim else None
        in_dim = emb_dim + chunk_emb_dim
        if kind == "lstm":
            self.lstm = nn.LSTM(in_dim, lstm_hidden, batch_first=True)
            width = lstm_hidden
        else:
            layers: list[nn.Module] = []
            for a, b in zip([in_dim, *mlp_hidden[:-1]], mlp_hidden):
                layers += [nn.Linear(a, b), nn.ReLU()]
            self.body = nn.Sequential(*layers)
            width = mlp_hidden[-1] if mlp_hidden else in_dim
        self.out = nn.Linear(width, chunk_size)
        self.task_emb = nn.Parameter(torch.zeros(emb_dim))
        self.register_buffer("emb_bank", torch.randn(max_tasks, emb_dim))  # HNET: N(0, 1) task embeddings
        self.growth_rank = growth_rank
        if growth_rank:
            self.grow_a = nn.Parameter(torch.zeros(width, growth_rank))
            self.grow_b = nn.Parameter(torch.zeros(growth_rank, chunk_size))
            self.register_buffer("grow_a_bank", torch.randn(max_tasks, width, growth_rank) / math.sqrt(width))
            self.register_buffer("grow_b_bank", torch.zeros(max_tasks, growth_rank, chunk_size))

    def features(self, emb: torch.Tensor) -> torch.Tensor:
        """Hidden features ``(B, n_chunks, width)`` for ``B`` task embeddings."""
        B = len(emb)
        inp = emb[:, None, :].expand(B, self.n_chunks, emb.shape[1])
        if self.chunk_emb is not None:
            inp = torch.cat([inp, self.chunk_emb[None].expand(B, -1, -1)], dim=2)
        if self.kind == "lstm":
            return self.lstm(inp)[0]
        return self.body(inp)

    def generate(
        self, emb: torch.Tensor, grow_a: torch.Tensor | None = None, grow_b: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Flat generated vectors ``(B, n_out)`` (chunks concatenated, the tail of the last one cut)."""
        h = self.features(emb)
        chunks = self.out(h)
        if self.growth_rank and grow_a is not None:
            chunks = chunks + torch.bmm(torch.bmm(h, grow_a), grow_b)
        return chunks.reshape(len(emb), -1)[:, : self.n_out]

    def slot_inputs(
        self, slots: list[int], current: int | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Embeddings (and growth factors) of ``slots``: the trainable ones for ``current``, else the bank's."""

        def pick(param: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
            rows = [param if s == current else bank[s] for s in slots]
            return torch.stack(rows)

        emb = pick(self.task_emb, self.emb_bank)
        if not self.growth_rank:
            return emb, None, None
        return emb, pick(self.grow_a, self.grow_a_bank), pick(self.grow_b, self.grow_b_bank)

    def store(self, slot: int) -> None:
        """Copy the trainable task parameters into ``slot`` of the banks."""
        with torch.no_grad():
            self.emb_bank[slot] = self.task_emb
            if self.growth_rank:
                self.grow_a_bank[slot] = self.grow_a
                self.grow_b_bank[slot] = self.grow_b

    def load_slot(self, slot: int) -> None:
        """Set the trainable task parameters from ``slot`` of the banks."""
        with torch.no_grad():
            self.task_emb.copy_(self.emb_bank[slot])
            if self.growth_rank:
                self.grow_a.copy_(self.grow_a_bank[slot])
                self.grow_b.copy_(self.grow_b_bank[slot])

    def shared_parameters(self) -> int:
        """Number of parameters shared by all tasks (the hypernetwork proper)."""
        own = {id(self.task_emb)} | ({id(self.grow_a), id(self.grow_b)} if self.growth_rank else set())
        return sum(p.numel() for p in self.parameters() if id(p) not in own)

    def per_task_parameters(self) -> int:
        """Parameters each task adds: its embedding (and growth factors)."""
        n = self.task_emb.numel()
        if self.growth_rank:
            n += self.grow_a.numel() + self.grow_b.numel()
        return n


class TargetNet(nn.Module):
    """Holds the hypernetwork and runs the target MLP functionally on generated weights."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], num_classes: int, hnet: HyperNetwork):
        super().__init__()
        self.shapes = target_shapes(in_dim, hidden, num_classes)
        self.sizes = [math.prod(s) for s in self.shapes]
        # a bias is scaled like its layer's weights: by 1/sqrt(fan_in of that layer)
        self.fan_in = [s[1] if len(s) == 2 else self.shapes[i - 1][1] for i, s in enumerate(self.shapes)]
        self.hnet = hnet
        # root-mean-square of the inputs, set once from the first experience (0 = not set yet)
        self.register_buffer("input_rms", torch.zeros(()))

    @property
    def n_out(self) -> int:
        """Number of target parameters (weights and biases)."""
        return sum(self.sizes)

    def scales(self) -> list[float]:
        """Factor of each generated tensor: 1/sqrt(fan_in), and 1/(sqrt(fan_in) * input rms) for the first weights."""
        out = [1.0 / math.sqrt(f) for f in self.fan_in]
        rms = float(self.input_rms)
        if rms > 0:
            out[0] /= rms
        return out

    def unpack(self, g: torch.Tensor) -> list[torch.Tensor]:
        """Split one generated vector into the target's tensors, each times its :meth:`scales` factor."""
        parts = torch.split(g, self.sizes)
        return [p.view(s) * c for p, s, c in zip(parts, self.shapes, self.scales())]

    def run(self, x: torch.Tensor, g: torch.Tensor, keep: list | None = None) -> torch.Tensor:
        """Target MLP on ``x`` with generated vector ``g``; appends (input, pre-activation) pairs to ``keep``."""
        params = self.unpack(g)
        h = x.reshape(len(x), -1)
        n_layers = len(params) // 2
        for i in range(n_layers):
            z = F.linear(h, params[2 * i], params[2 * i + 1])
            if keep is not None:
                keep.append((h, z))
            h = F.relu(z) if i < n_layers - 1 else z
        return h

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - learners call run()
        raise NotImplementedError("TargetNet needs generated weights: use HypernetLearner.predict")
