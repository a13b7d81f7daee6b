"""Sequence models that read a prompt and predict ``y_i`` at every position ``i`` from ``x_1, y_1, ..., x_i``.

:class:`PromptTransformer` is a small causal (GPT-2-style, pre-LayerNorm) transformer from stock ``torch.nn`` blocks
(``nn.MultiheadAttention``, ``nn.LayerNorm``, ``nn.Linear``). With ``tokens="interleaved"`` (default) the prompt is
the token sequence ``x_1, y_1, x_2, ..., y_{n-1}, x_n`` (an x-token and a y-token per example, as in *What learning
algorithm is in-context learning? Investigations with linear models*, arXiv 2211.15661, and the Boolean study
arXiv 2310.03016) and prediction ``i`` is read at ``x_i``'s token; with ``tokens="paired"`` token ``t`` is
``[x_t ; y_{t-1}]`` with a learned pad at ``t = 1`` (General-Purpose In-Context Learning by Meta-Learning
Transformers, arXiv 2212.04458). :class:`PromptLSTM` reads paired tokens (GPICL's state-size ablation).
"""

from __future__ import annotations

import torch
from torch import nn

from lifelong.errors import ConfigError, DataError
from lifelong.incontext.prompts import KINDS, Prompts

__all__ = ["PromptTransformer", "PromptLSTM", "PromptModel"]


class _Block(nn.Module):
    """Pre-LN transformer block: ``h + attn(ln(h))`` then, unless attention-only, ``h + mlp(ln(h))``."""

    def __init__(self, d_model: int, heads: int, mlp: bool, mlp_ratio: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = nn.MultiheadAttention(d_model, heads, dropout=dropout, batch_first=True)
        self.mlp = (
            nn.Sequential(
                nn.LayerNorm(d_model),
                nn.Linear(d_model, mlp_ratio * d_model),
                nn.GELU(),
                nn.Linear(mlp_ratio * d_model, d_model),
                nn.Dropout(dropout),
            )
            if mlp
            else None
        )

    def forward(self, h: torch.Tensor, mask: torch.Tensor, need_weights: bool):
        a = self.ln1(h)
        out, w = self.attn(a, a, a, attn_mask=mask, need_weights=need_weights, average_attn_weights=False)
        h = h + out
        if self.mlp is not None:
            h = h + self.mlp(h)
        return h, w


class PromptModel(nn.Module):
    """What the prompt models share: input/label embeddings, the read-out and the output shape by kind."""

    def __init__(self, d_x: int, d_out: int, kind: str, d_model: int, x_vocab: int | None, readout_hidden: int):
        super().__init__()
        if kind not in KINDS:
            raise ConfigError(f"unknown prompt kind {kind!r}; choose one of: {', '.join(KINDS)}")
        if kind == "classes" and d_out < 2:
            raise ConfigError(f"kind 'classes' needs d_out = number of labels >= 2, got {d_out}")
        if kind != "classes" and d_out != 1:
            raise ConfigError(f"kind {kind!r} predicts one number per position: set d_out=1, got {d_out}")
        self.kind, self.d_x, self.d_out, self.d_model, self.x_vocab = kind, d_x, d_out, d_model, x_vocab
        self.x_in = nn.Embedding(x_vocab, d_model) if x_vocab else nn.Linear(d_x, d_model)
        self.y_in = nn.Embedding(d_out, d_model) if kind == "classes" else nn.Linear(1, d_model)
        if readout_hidden > 0:  # a 3-layer MLP classifier (the in-context classification study's "deep classifier")
            self.readout = nn.Sequential(
                nn.Linear(d_model, readout_hidden),
                nn.ReLU(),
                nn.Linear(readout_hidden, readout_hidden),
                nn.ReLU(),
                nn.Linear(readout_hidden, d_out),
            )
        else:
            self.readout = nn.Linear(d_model, d_out)

    def embed_x(self, xs: torch.Tensor) -> torch.Tensor:
        """Input embeddings ``[B, n, d_model]`` of ``xs`` (vectors, or token ids when ``x_vocab`` is set)."""
        if self.x_vocab:
            if xs.dtype != torch.long:
                raise DataError(f"this model embeds token ids: xs must be long [B, n], got {xs.dtype}")
            return self.x_in(xs.reshape(xs.shape[0], xs.shape[1]))
        if xs.dim() != 3 or xs.shape[-1] != self.d_x:
            raise DataError(f"this model reads xs [B, n, {self.d_x}], got {tuple(xs.shape)}")
        return self.x_in(xs.float())

    def embed_y(self, ys: torch.Tensor) -> torch.Tensor:
        """Label embeddings ``[B, n, d_model]`` of ``ys``."""
        if self.kind == "classes":
            return self.y_in(ys.long())
        return self.y_in(ys.float().unsqueeze(-1))

    def output(self, h: torch.Tensor) -> torch.Tensor:
        """Predictions from hidden states: ``[B, n]`` for regression / binary logits, ``[B, n, L]`` for classes."""
        out = self.readout(h)
        return out.squeeze(-1) if self.kind != "classes" else out

    def input_embeddings(self) -> list[nn.Module]:
        """The modules that embed inputs and labels (reset by forgetting schedules)."""
        return [self.x_in, self.y_in]

    def _check(self, prompts: Prompts) -> None:
        if prompts.kind != self.kind:
            raise DataError(f"this model predicts {self.kind!r} prompts, got {prompts.kind!r} prompts")
        if self.kind == "classes" and prompts.num_labels != self.d_out:
            raise DataError(f"this model has {self.d_out} labels, the prompts {prompts.num_labels}")


class PromptTransformer(PromptModel):
    """A causal transformer over a prompt; ``forward(prompts)`` predicts every position.

    Args:
        d_x: input dimension (ignored with ``x_vocab``).
        d_out: 1 for ``"regression"`` / ``"binary"``, the number of labels for ``"classes"``.
        kind: ``"regression"`` | ``"binary"`` | ``"classes"``.
        d_model, layers, heads: width, depth, attention heads.
        mlp: whether blocks have an MLP; ``attention_only=True`` is the same as ``mlp=False``.
        positional: ``"learned"`` (absolute, ``max_points`` examples) or ``"none"``.
        max_points: longest prompt (examples) the positional table covers.
        tokens: ``"interleaved"`` (``x_1, y_1, ..., x_n``; 2n - 1 tokens) or ``"paired"`` (``[x_t ; y_{t-1}]``).
        x_vocab: when set, inputs are token ids embedded by an ``nn.Embedding(x_vocab, d_model)``.
        readout_hidden: 0 for a linear read-out, else a 3-layer MLP of this width.
        mlp_ratio, dropout: MLP width factor and dropout (0 by default, so training is deterministic).
    """

    def __init__(
        self,
        d_x: int,
        d_out: int = 1,
        kind: str = "regression",
        *,
        d_model: int = 64,
        layers: int = 2,
        heads: int = 4,
        mlp: bool = True,
        attention_only: bool = False,
        positional: str = "learned",
        max_points: int = 64,
        tokens: str = "interleaved",
        x_vocab: int | None = None,
        readout_hidden: int = 0,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
    ):
        super().__init__(d_x, d_out, kind, d_model, x_vocab, readout_hidden)
        if positional not in ("learned", "none"):
            raise ConfigError(f"positional must be 'learned' or 'none', got {positional!r}")
        if tokens not in ("interleaved", "paired"):
            raise ConfigError(f"tokens must be 'interleaved' or 'paired', got {tokens!r}")
        if d_model % heads:
            raise ConfigError(f"d_model ({d_model}) must be divisible by heads ({heads})")
        self.tokens, self.max_points, self.positional = tokens, max_points, positional
        per_example = 2 if tokens == "interleaved" else 1
        self.pos = nn.Embedding(per_example * max_points, d_model) if positional == "learned" else None
        self.pad = nn.Parameter(torch.zeros(d_model)) if tokens == "paired" else None
        self.blocks = nn.ModuleList(
            _Block(d_model, heads, mlp and not attention_only, mlp_ratio, dropout) for _ in range(layers)
        )
        self.ln_f = nn.LayerNorm(d_model)

    def tokenize(self, prompts: Prompts) -> torch.Tensor:
        """The token embeddings ``[B, T, d_model]`` of ``prompts`` (positions added)."""
        self._check(prompts)
        n = prompts.n_points
        if n > self.max_points:
            raise DataError(f"prompts have {n} points; this model was built for max_points={self.max_points}")
        ex, ey = self.embed_x(prompts.xs), self.embed_y(prompts.ys)
        b, d = ex.shape[0], self.d_model
        if self.tokens == "interleaved":
            h = torch.stack([ex, ey], dim=2).reshape(b, 2 * n, d)[:, : 2 * n - 1]  # y_n is never read
        else:
            prev = torch.cat([self.pad.expand(b, 1, d), ey[:, :-1]], dim=1)
            h = ex + prev
        if self.pos is not None:
            h = h + self.pos.weight[: h.shape[1]]
        return h

    def query_index(self, n_points: int) -> torch.Tensor:
        """Token index at which prediction ``i`` is read, for ``i < n_points``."""
        step = 2 if self.tokens == "interleaved" else 1
        return torch.arange(n_points) * step

    def forward(self, prompts: Prompts, return_attention: bool = False) -> torch.Tensor | tuple:
        """Predictions at every position; with ``return_attention`` also a list of ``[B, heads, T, T]`` maps."""
        h = self.tokenize(prompts)
        t = h.shape[1]
        mask = torch.ones(t, t, dtype=torch.bool, device=h.device).triu(1)  # True = may not attend (the future)
        maps = []
        for block in self.blocks:
            h, w = block(h, mask, return_attention)
            if return_attention:
                maps.append(w)
        out = self.output(self.ln_f(h[:, self.query_index(prompts.n_points).to(h.device)]))
        return (out, maps) if return_attention else out


class PromptLSTM(PromptModel):
    """An LSTM over paired tokens ``[x_t ; y_{t-1}]``: the same interface as :class:`PromptTransformer`.

    Its memory is the LSTM state (``hidden`` units per layer), the knob of GPICL's state-size ablation.
    """

    def __init__(
        self,
        d_x: int,
        d_out: int = 1,
        kind: str = "regression",
        *,
        d_model: int = 64,
        hidden: int = 128,
        layers: int = 1,
        x_vocab: int | None = None,
        readout_hidden: int = 0,
    ):
        super().__init__(d_x, d_out, kind, d_model, x_vocab, 0)
        self.pad = nn.Parameter(torch.zeros(d_model))
        self.lstm = nn.LSTM(d_model, hidden, num_layers=layers, batch_first=True)
        self.proj = nn.Linear(hidden, d_model)
        if readout_hidden:
            self.readout = PromptModel(1, d_out, kind, d_model, None, readout_hidden).readout

    def forward(self, prompts: Prompts, return_attention: bool = False) -> torch.Tensor | tuple:
        """Predictions at every position (an LSTM has no attention maps)."""
        if return_attention:
            raise ConfigError("PromptLSTM has no attention maps; use PromptTransformer for attention probes")
        self._check(prompts)
        ex, ey = self.embed_x(prompts.xs), self.embed_y(prompts.ys)
        b, d = ex.shape[0], self.d_model
        h = ex + torch.cat([self.pad.expand(b, 1, d), ey[:, :-1]], dim=1)
        out, _ = self.lstm(h)
        return self.output(self.proj(out))
