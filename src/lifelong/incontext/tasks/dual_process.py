"""Part-of-speech toy task for structural in-context vs in-weights learning, with novel (never trained) tokens.

After the synthetic setting of *Dual Process Learning: Controlling Use of In-Context vs. In-Weights Strategies with
Weight Forgetting* (Anand, Lepori, Merullo & Pavlick, arXiv 2406.00053). The vocabulary holds nouns, adjectives, a
copula token and held-out tokens that never occur in training. A sentence is ``[cop, adj, noun]`` or
``[noun, cop, adj]`` (the position of the copula says which word is which), then a query token: the sentence's
adjective or its noun. The target is the query's role **in this sentence** (0 noun, 1 adjective). Nouns and
adjectives follow a Zipf rank-frequency; a fraction ``prop_amb`` of them is ambiguous (it takes the other role half
of the time), so token identity alone cannot always answer. A model can answer from the structure (find the query
in the sentence, read its slot: structural ICL, works for any token) or from the token's identity (in-weights).

Evaluation sets (``mode``): ``"holdout"`` (both words held-out tokens: structural ICL only), ``"switch"`` (a
Zipf-drawn noun in the adjective slot and vice versa: the structure and the weights disagree; accuracy = following
the context, ``1 - accuracy`` = preference for the in-weights answer), ``"tail_switch"`` (the same with tokens of
the rarest 10 %), ``"tail"`` and ``"train"``. Departure from the official task: the official model copies the
masked words (a masked LM with tied embeddings); here it names the query's role, the decision the copy depends on.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lifelong.errors import ConfigError
from lifelong.incontext.prompts import Prompts
from lifelong.incontext.tasks.bursty import zipf_probabilities

__all__ = ["DualProcessTask", "DP_MODES"]

DP_MODES = ("train", "holdout", "switch", "tail", "tail_switch")


@dataclass
class DualProcessTask:
    """Sampler of role-of-the-query prompts over one vocabulary (ambiguous tokens fixed by ``seed``).

    Args:
        vocab: nouns + adjectives (even): nouns are ids ``0..vocab/2-1`` by frequency rank, adjectives
            ``vocab/2..vocab-1``; the copula is ``vocab``; held-out tokens are ``vocab+1 .. vocab+holdout``.
        holdout: held-out tokens (never in training prompts); 0 means ``vocab // 10``.
        zipf: rank-frequency exponent within each role (0: uniform).
        prop_amb: fraction of each role's tokens that are ambiguous (stratified over 5 frequency bins).
        tail_fraction: the rarest fraction of each role used by the ``tail*`` modes.
        mode: one of :data:`DP_MODES`.
        seed: seed of the choice of ambiguous tokens.

    Prompts have 4 points (3 sentence tokens, then the query), token ids in ``xs`` ``[b, 4]`` (long), ``ys`` 0
    on the sentence tokens (read by no loss) and the target on the query; ``kind="classes"``, 2 labels.
    ``extra``: ``"loss_mask"`` (the query only), ``"query_rank"`` (the query token's frequency rank within its
    role, ``-1`` for held-out tokens), ``"query_token"``.
    """

    vocab: int = 1000
    holdout: int = 0
    zipf: float = 1.2
    prop_amb: float = 0.1
    tail_fraction: float = 0.1
    mode: str = "train"
    seed: int = 0
    amb_nouns: torch.Tensor = field(init=False, repr=False)
    amb_adjs: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.mode not in DP_MODES:
            raise ConfigError(f"unknown mode {self.mode!r}; choose one of: {', '.join(DP_MODES)}")
        if self.vocab < 10 or self.vocab % 2:
            raise ConfigError(f"vocab must be even and >= 10, got {self.vocab}")
        if self.holdout == 0:
            self.holdout = self.vocab // 10
        if self.holdout < 2:
            raise ConfigError("holdout must be >= 2 tokens")
        if not 0.0 <= self.prop_amb < 1.0 or not 0.0 < self.tail_fraction <= 1.0 or self.zipf < 0:
            raise ConfigError("need 0 <= prop_amb < 1, 0 < tail_fraction <= 1 and zipf >= 0")
        half = self.vocab // 2
        self.cop = self.vocab
        self.probs = zipf_probabilities(half, self.zipf).float()
        g = torch.Generator().manual_seed(int(self.seed))
        amb = []
        for _ in range(2):
            picked = []
            bins = torch.arange(half).tensor_split(5)
            for ranks in bins:
                k = int(torch.ceil(torch.tensor(len(ranks) * self.prop_amb)).item()) if self.prop_amb > 0 else 0
                picked.append(ranks[torch.randperm(len(ranks), generator=g)[:k]])
            amb.append(torch.cat(picked).sort().values)
        self.amb_nouns, self.amb_adjs = amb[0], amb[1] + half
        self.is_amb = torch.zeros(self.vocab + 1 + self.holdout, dtype=torch.bool)
        self.is_amb[self.amb_nouns] = True
        self.is_amb[self.amb_adjs] = True

    @property
    def num_tokens(self) -> int:
        """Size of the input vocabulary (nouns, adjectives, copula, held-out tokens)."""
        return self.vocab + 1 + self.holdout

    @property
    def holdout_tokens(self) -> torch.Tensor:
        """Ids of the held-out tokens."""
        return torch.arange(self.vocab + 1, self.vocab + 1 + self.holdout)

    def with_mode(self, mode: str) -> DualProcessTask:
        """The same vocabulary (same ambiguous tokens) sampled in another ``mode``."""
        return DualProcessTask(self.vocab, self.holdout, self.zipf, self.prop_amb, self.tail_fraction, mode, self.seed)

    # -- draws ----------------------------------------------------------------------------------------------------
    def _zipf(self, b: int, g: torch.Generator) -> torch.Tensor:
        """Frequency ranks ``[b]`` within a role."""
        return torch.multinomial(self.probs, b, replacement=True, generator=g)

    def _tail(self, b: int, g: torch.Generator) -> torch.Tensor:
        half = self.vocab // 2
        n_tail = max(1, int(round(half * self.tail_fraction)))
        return half - n_tail + torch.randint(n_tail, (b,), generator=g)

    def _with_ambiguity(self, tok: torch.Tensor, other_amb: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Ambiguous tokens take the other role half of the time: replaced by a Zipf-drawn ambiguous token of it."""
        swap = self.is_amb[tok] & (torch.rand(tok.shape, generator=g) < 0.5)
        if not swap.any() or len(other_amb) == 0:
            return tok
        p = zipf_probabilities(len(other_amb), self.zipf).float()
        repl = other_amb[torch.multinomial(p, int(swap.sum()), replacement=True, generator=g)]
        return tok.masked_scatter(swap, repl)

    def _words(self, b: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """The (noun-slot, adjective-slot) tokens ``[b]`` of ``mode``."""
        half = self.vocab // 2
        if self.mode == "holdout":
            pick = torch.rand(b, self.holdout, generator=g).argsort(dim=1)[:, :2]  # two distinct held-out tokens
            return self.vocab + 1 + pick[:, 0], self.vocab + 1 + pick[:, 1]
        draw = self._tail if self.mode.startswith("tail") else self._zipf
        noun, adj = draw(b, g), draw(b, g) + half
        if self.mode == "train":
            noun = self._with_ambiguity(noun, self.amb_adjs, g)
            adj = self._with_ambiguity(adj, self.amb_nouns, g)
        if self.mode.endswith("switch"):
            noun, adj = adj, noun  # an adjective in the noun slot and a noun in the adjective slot
        return noun, adj

    def sample(self, batch: int, generator: torch.Generator) -> Prompts:
        """``batch`` prompts of this sampler's ``mode`` (vectorised)."""
        g, b = generator, batch
        noun, adj = self._words(b, g)
        for _ in range(100):  # the two words of a sentence must differ, else the query's role is undefined
            same = noun == adj
            if not same.any():
                break
            n2, a2 = self._words(int(same.sum()), g)
            noun, adj = noun.masked_scatter(same, n2), adj.masked_scatter(same, a2)
        cop = torch.full((b,), self.cop, dtype=torch.long)
        cop_first = torch.rand(b, generator=g) < 0.5
        ask_adj = torch.rand(b, generator=g) < 0.5
        sentence = torch.where(
            cop_first[:, None], torch.stack([cop, adj, noun], dim=1), torch.stack([noun, cop, adj], dim=1)
        )
        query = torch.where(ask_adj, adj, noun)
        xs = torch.cat([sentence, query[:, None]], dim=1)
        ys = torch.zeros(b, 4, dtype=torch.long)
        ys[:, -1] = ask_adj.long()
        half = self.vocab // 2
        rank = torch.where(query < half, query, query - half)
        rank = torch.where(query > self.vocab, torch.full_like(rank, -1), rank)
        mask = torch.zeros(b, 4, dtype=torch.bool)
        mask[:, -1] = True
        return Prompts(xs, ys, "classes", 2, {"loss_mask": mask, "query_rank": rank, "query_token": query})
