"""Prompt pools inside a pre-trained text encoder: L2P's key-matched pool, DualPrompt's prefixes, CODA's components.

Two ways a prompt enters the stock ``transformers`` layers of a
:class:`~lifelong.encoders.text_backbone.TextBackbone` (never by forking model code):

* **prompt tuning** — learned tokens appended to the embedded sentence before the first layer (no position
  embedding; attention is order-free, so appending equals L2P's prepending). :func:`prompted_encode` with
  ``input_prompts``.
* **prefix tuning** — learned key/value prefixes in the self-attention of chosen layers, through the
  attention's own past-key-values hook: each layer is called with ``cache=PrefixCache(keys, values)``, whose
  ``update`` puts the prefixes before the layer's keys and values (what PEFT's prefix tuning does with
  ``past_key_values``); the attention mask gets the prefix positions. :func:`prompted_encode` with ``prefixes``.

The pools pick their prompts with a *query*: the frozen encoder's pooled feature of the input (no prompts),
computed once per input by the learner and cached.

* :class:`KeyedPromptPool` — L2P (arXiv 2112.08485): ``size`` prompts of ``length`` tokens with keys, the
  top-N keys by cosine similarity to the query pick the prompts; surrogate loss pulls the picked keys.
* :class:`DualPrefixes` — DualPrompt (arXiv 2204.04799): a shared G-prompt in some layers and one E-prompt
  per task (with a key) in others.
* :class:`CodaPrompt` — CODA-Prompt (arXiv 2211.13218): a pool of components per layer with keys and
  attention vectors; the prompt is the attention-weighted sum of the components; each task adds its share of
  components, initialised orthogonal (Gram–Schmidt) to all earlier ones; earlier ones stay frozen.

Tasks' frozen parts are buffers; the parts a task trains are Parameters made by ``begin_task`` and written
back by ``end_task``, so earlier tasks' tensors stay bit-identical whatever the optimizer does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lifelong.errors import ConfigError

PROMPT_POOLS = ("prompts", "mean")


class PrefixCache:
    """Key/value prefixes of one self-attention call, given to the stock layer as its ``cache``.

    ``transformers``' BERT self-attention calls ``cache.update(key_states, value_states, layer_idx, ...)`` and
    attends over what it returns; this returns ``[prefix, states]`` along the sequence axis. ``keys`` and
    ``values`` are (n, P, hidden) and are split into the layer's heads here.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor):
        if keys.shape != values.shape:
            raise ConfigError(f"prefix keys and values must have one shape, got {keys.shape} and {values.shape}")
        self.keys, self.values = keys, values

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object, **kwargs: object
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(keys, values) with the prefixes first; ``key_states`` is (n, heads, L, head_dim)."""
        n, heads, _, head_dim = key_states.shape

        def split(p: torch.Tensor) -> torch.Tensor:
            return p.to(key_states.dtype).reshape(n, -1, heads, head_dim).transpose(1, 2)

        return (
            torch.cat([split(self.keys), key_states], dim=2),
            torch.cat([split(self.values), value_states], dim=2),
        )


def _attention_mask(config: object, hidden: torch.Tensor, key_mask: torch.Tensor) -> torch.Tensor | None:
    from transformers.masking_utils import create_bidirectional_mask

    return create_bidirectional_mask(config=config, inputs_embeds=hidden, attention_mask=key_mask.long())


def prompted_encode(
    backbone: nn.Module,
    x: torch.Tensor,
    input_prompts: torch.Tensor | None = None,
    prefixes: dict[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
    pool: str = "mean",
) -> torch.Tensor:
    """Pooled output of ``backbone``'s stock layers on token ids ``x`` with prompts.

    Args:
        backbone: a :class:`~lifelong.encoders.text_backbone.TextBackbone` (without VPT prompts).
        x: right-padded token ids (n, L).
        input_prompts: (n, P, hidden) tokens appended after the embedded sentence (prompt tuning), or None.
        prefixes: layer index -> (keys, values), each (n, P_l, hidden) (prefix tuning), or None.
        pool: ``mean`` — the backbone's pooling over the sentence tokens; ``prompts`` — the mean of the
            outputs at the input prompts' positions (L2P's ``head_type='prompt'``).
    """
    if pool not in PROMPT_POOLS:
        raise ConfigError(f"pool must be one of {PROMPT_POOLS}, got {pool!r}")
    if getattr(backbone, "prompts", None) is not None:
        raise ConfigError("prompted_encode needs a backbone without VPT prompts")
    layers = backbone.encoder.encoder.layer
    config = backbone.encoder.config
    prefixes = prefixes or {}
    bad = [i for i in prefixes if not 0 <= i < len(layers)]
    if bad:
        raise ConfigError(f"prefix layers {bad} do not exist: the encoder has {len(layers)} layers")
    hidden, mask = backbone.embed(x)
    n, length = hidden.shape[:2]
    if input_prompts is not None:
        hidden = torch.cat([hidden, input_prompts.to(hidden.dtype)], dim=1)
        mask = torch.cat([mask, mask.new_ones(n, input_prompts.shape[1])], dim=1)
    elif pool == "prompts":
        raise ConfigError("pool='prompts' needs input prompts")
    plain = _attention_mask(config, hidden, mask)
    for i, layer in enumerate(layers):
        if i in prefixes:
            keys, values = prefixes[i]
            key_mask = torch.cat([mask.new_ones(n, keys.shape[1]), mask], dim=1)
            out = layer(hidden, _attention_mask(config, hidden, key_mask), cache=PrefixCache(keys, values))
        else:
            out = layer(hidden, plain)
        hidden = out[0] if isinstance(out, tuple) else out
    if pool == "prompts":
        return hidden[:, length:].mean(1)
    return backbone.pool(hidden[:, :length], mask[:, :length])


def cosine(query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Cosine similarity (n, M) of queries (n, d) with keys (M, d)."""
    return F.normalize(query, dim=-1) @ F.normalize(keys, dim=-1).T


# ---- L2P ----------------------------------------------------------------------------------------
class KeyedPromptPool(nn.Module):
    """L2P's prompt pool: ``size`` prompts of ``length`` tokens, each with a key; top-``top_n`` by query match.

    Prompts and keys are initialised uniform on [0, 1) (official ``initializer='uniform'``,
    ``prompt_key_init='uniform'``); every prompt and key trains at every task (L2P freezes nothing).
    """

    def __init__(self, size: int, length: int, dim: int, key_dim: int, top_n: int, generator: torch.Generator):
        super().__init__()
        if not 1 <= top_n <= size or length < 1:
            raise ConfigError(f"need 1 <= top_n <= pool size and length >= 1, got {top_n}, {size}, {length}")
        self.top_n = int(top_n)
        self.prompts = nn.Parameter(torch.rand(size, length, dim, generator=generator))
        self.keys = nn.Parameter(torch.rand(size, key_dim, generator=generator))

    def select(self, query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(indices (n, top_n) of the best-matching keys, their cosine similarities (n, top_n))."""
        sim = cosine(query, self.keys)
        best = sim.topk(self.top_n, dim=1)
        return best.indices, best.values

    def tokens(self, idx: torch.Tensor) -> torch.Tensor:
        """The selected prompts as input tokens (n, top_n * length, dim)."""
        return self.prompts[idx].flatten(1, 2)


# ---- DualPrompt ---------------------------------------------------------------------------------
class DualPrefixes(nn.Module):
    """DualPrompt's G-prompt (shared, layers ``g_layers``) and E-prompts (one per task, layers ``e_layers``).

    Each prompt holds ``length`` key and ``length`` value prefix positions per layer (the (2, length, d)
    prefixes of the PyTorch port). E-prompts have keys, matched against the query (top-1) at inference; during
    training the current task's E-prompt is used (task identity known in training, as the paper). Uniform
    [0, 1) init; with ``init_from_previous`` a task's E-prompt (not its key) starts as a copy of the previous
    task's trained one (``dualprompt-pytorch``'s ``shared_prompt_pool=True``, ``shared_prompt_key=False``).
    Earlier tasks' E-prompts and keys are buffers, never changed after their task.
    """

    def __init__(
        self,
        g_layers: tuple[int, ...],
        e_layers: tuple[int, ...],
        g_length: int,
        e_length: int,
        tasks: int,
        dim: int,
        key_dim: int,
        generator: torch.Generator,
        init_from_previous: bool = False,
    ):
        super().__init__()
        self.g_layers, self.e_layers = tuple(g_layers), tuple(e_layers)
        self.init_from_previous = bool(init_from_previous)
        self.g = nn.Parameter(torch.rand(len(g_layers), 2, g_length, dim, generator=generator))
        self.register_buffer("e", torch.rand(tasks, len(e_layers), 2, e_length, dim, generator=generator))
        self.register_buffer("e_keys", torch.rand(tasks, key_dim, generator=generator))
        self.register_buffer("trained", torch.zeros((), dtype=torch.long))  # tasks trained so far
        self.active: int | None = None
        self.e_active: nn.Parameter | None = None
        self.key_active: nn.Parameter | None = None

    @property
    def tasks(self) -> int:
        """Number of E-prompts (the most tasks it can learn)."""
        return int(self.e.shape[0])

    def begin_task(self, task: int) -> list[nn.Parameter]:
        """Start training task ``task``'s E-prompt and key; returns what trains (with the G-prompt)."""
        if not 0 <= task < self.tasks:
            raise ConfigError(f"DualPrompt has E-prompts for {self.tasks} tasks; task {task} needs method.tasks more")
        self.active = task
        # the PyTorch port's shared_prompt_pool: a new task's E-prompt starts from the previous task's trained one
        start = task - 1 if self.init_from_previous and 0 < task <= int(self.trained) else task
        self.e_active = nn.Parameter(self.e[start].clone())
        self.key_active = nn.Parameter(self.e_keys[task].clone())
        return [self.g, self.e_active, self.key_active]

    def end_task(self) -> None:
        """Write the trained E-prompt and key back (then they are frozen)."""
        with torch.no_grad():
            self.e[self.active] = self.e_active.detach()
            self.e_keys[self.active] = self.key_active.detach()
        self.trained.fill_(max(int(self.trained), self.active + 1))
        self.active = self.e_active = self.key_active = None

    def prefixes(self, query: torch.Tensor) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """(layer -> (keys, values), key-matching loss): during training the active task's E-prompt, else top-1."""
        n = len(query)
        if self.active is not None:
            e = self.e_active.expand(n, *self.e_active.shape)
            loss = (1.0 - cosine(query, self.key_active[None])[:, 0]).mean()
        else:
            used = max(int(self.trained), 1)
            pick = cosine(query, self.e_keys[:used]).argmax(1)
            e = self.e[pick]
            loss = query.new_zeros(())
        out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for j, layer in enumerate(self.g_layers):
            g = self.g[j].expand(n, *self.g[j].shape)
            out[layer] = (g[:, 0], g[:, 1])
        for j, layer in enumerate(self.e_layers):
            k, v = e[:, j, 0], e[:, j, 1]
            if layer in out:  # official order when both: E then G
                k, v = torch.cat([k, out[layer][0]], 1), torch.cat([v, out[layer][1]], 1)
            out[layer] = (k, v)
        return out, loss


# ---- CODA-Prompt --------------------------------------------------------------------------------
def orthogonal_rows(old: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` random unit rows orthogonal to each other and to the span of ``old`` (s, D) (Gram–Schmidt).

    Random normal vectors are projected off ``old``'s span (twice, for rounding) and orthonormalised by QR.
    Raises :class:`ConfigError` when ``s + count > D`` (no room for orthogonal rows).
    """
    s, dim = old.shape
    if s + count > dim:
        raise ConfigError(f"cannot draw {count} rows orthogonal to {s} others in {dim} dimensions")
    v = torch.randn(count, dim, generator=generator, dtype=torch.float64)
    basis = torch.linalg.qr(old.double().T).Q if s else None  # (D, s) orthonormal columns
    for _ in range(2):
        if basis is not None:
            v = v - (v @ basis) @ basis.T
        v = torch.linalg.qr(v.T).Q.T
    return v.to(old.dtype)


def ortho_penalty(t: torch.Tensor) -> torch.Tensor:
    """CODA's orthogonality loss ``mean((t t^T - I)^2)`` over the rows of ``t`` (M, D)."""
    return (t @ t.T - torch.eye(len(t), dtype=t.dtype)).pow(2).mean()


class CodaPrompt(nn.Module):
    """CODA-Prompt's decomposed prompts: per layer ``pool`` components (length, d), keys and attention vectors.

    For query ``q`` the weight of component ``m`` is ``cos(q * A_m, K_m)`` and the layer's prompt the weighted
    sum of the components; its first ``length // 2`` positions are the prefix keys, the rest the values
    (official split). Task ``t`` owns components ``[t*per_task, (t+1)*per_task)``, ``per_task = pool // tasks``;
    they are initialised orthogonal to every earlier component (:func:`orthogonal_rows`) and trained during
    task ``t`` only; at inference the components of all tasks begun so far are used.
    """

    def __init__(self, layers: tuple[int, ...], pool: int, length: int, tasks: int, dim: int, key_dim: int):
        super().__init__()
        if length < 2 or length % 2:
            raise ConfigError(f"CODA prompt length must be even and >= 2 (keys | values), got {length}")
        if pool < tasks:
            raise ConfigError(f"pool ({pool}) must hold at least one component per task ({tasks} tasks)")
        self.layers = tuple(layers)
        self.per_task = pool // tasks
        self.tasks = int(tasks)
        nl = len(self.layers)
        self.register_buffer("components", torch.zeros(nl, pool, length, dim))
        self.register_buffer("keys", torch.zeros(nl, pool, key_dim))
        self.register_buffer("attention", torch.zeros(nl, pool, key_dim))
        self.register_buffer("begun", torch.zeros((), dtype=torch.long))  # tasks begun so far
        self.active: nn.ParameterList | None = None

    def begin_task(self, task: int, generator: torch.Generator) -> list[nn.Parameter]:
        """Initialise task ``task``'s components orthogonal to the earlier ones; returns what trains."""
        if not 0 <= task < self.tasks:
            raise ConfigError(
                f"CODA-Prompt's pool is split over {self.tasks} tasks; task {task} needs method.tasks more"
            )
        s, f = task * self.per_task, (task + 1) * self.per_task
        with torch.no_grad():
            for store in (self.components, self.keys, self.attention):
                for j in range(len(self.layers)):
                    flat = store[j].flatten(1)
                    store[j, s:f] = orthogonal_rows(flat[:s], f - s, generator).view_as(store[j, s:f])
        self.begun.fill_(task + 1)
        self.active = nn.ParameterList(
            [nn.Parameter(store[:, s:f].clone()) for store in (self.components, self.keys, self.attention)]
        )
        return list(self.active)

    def end_task(self) -> None:
        """Write the trained components, keys and attention vectors back (then they are frozen)."""
        s = (int(self.begun) - 1) * self.per_task
        with torch.no_grad():
            for store, p in zip((self.components, self.keys, self.attention), self.active):
                store[:, s : s + self.per_task] = p.detach()
        self.active = None

    def _tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = int(self.begun) * self.per_task
        if self.active is None:
            return self.components[:, :f], self.keys[:, :f], self.attention[:, :f]
        s = f - self.per_task
        return tuple(
            torch.cat([store[:, :s], p], dim=1)
            for store, p in zip((self.components, self.keys, self.attention), self.active)
        )

    def prefixes(
        self, query: torch.Tensor, ortho_weight: float = 0.0
    ) -> tuple[dict[int, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]:
        """(layer -> (keys, values) of the composed prompts, orthogonality loss * ``ortho_weight`` in training)."""
        P, K, A = self._tensors()
        aq = F.normalize(query[None, :, None, :] * A[:, None], dim=-1)  # (layers, n, M, dk)
        alpha = (aq * F.normalize(K, dim=-1)[:, None]).sum(-1)  # (layers, n, M)
        prompts = torch.einsum("lnm,lmpd->lnpd", alpha, P)  # (layers, n, length, d)
        half = P.shape[2] // 2
        out = {layer: (prompts[j, :, :half], prompts[j, :, half:]) for j, layer in enumerate(self.layers)}
        loss = query.new_zeros(())
        if self.active is not None and ortho_weight > 0:
            for j in range(len(self.layers)):
                loss = loss + ortho_weight * (
                    ortho_penalty(K[j]) + ortho_penalty(A[j]) + ortho_penalty(P[j].flatten(1))
                )
        return out, loss


__all__ = [
    "PROMPT_POOLS",
    "CodaPrompt",
    "DualPrefixes",
    "KeyedPromptPool",
    "PrefixCache",
    "cosine",
    "ortho_penalty",
    "orthogonal_rows",
    "prompted_encode",
]
