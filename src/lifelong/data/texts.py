"""A loaded text dataset: sentences and labels per split, before they become model inputs.

The text loaders (:mod:`lifelong.data.clinc150`, :mod:`lifelong.data.textfile`) read a
:class:`TextDataset`; one more step turns it into a :class:`~lifelong.data.Dataset` of
frozen sentence vectors (:func:`lifelong.data.encode.encode_dataset`) or of token ids
for a text backbone (:func:`lifelong.data.tokens.tokenize_dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from lifelong.data.dataset import Dataset


@dataclass
class TextDataset:
    """Sentences of the train and the evaluation split, their class ids, and what the Dataset carries along.

    ``texts`` maps ``"train"`` and ``test_split`` to the sentences; the split names are
    the ones the feature cache files are named after (CLINC150 keeps its own ``"val"``).
    ``full`` optionally gives, per split, the complete split the sentences were
    subsampled from (so cached features of it can be reused). ``citation`` goes into
    ``meta`` after the encoder's identity, where the features dataset has one.
    """

    name: str
    texts: dict[str, list[str]]
    y_train: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    coarse_labels: list[int] | None = None
    meta: dict = field(default_factory=dict)
    test_split: str = "test"
    citation: str | None = None
    full: dict[str, list[str]] | None = None

    def dataset(self, name: str, x_train: torch.Tensor, x_test: torch.Tensor, meta: dict) -> Dataset:
        """A :class:`Dataset` of these labels with inputs ``x_train``/``x_test``; domains follow the coarse labels."""
        extra = {}
        if self.coarse_labels is not None:
            ct = torch.tensor(self.coarse_labels, dtype=torch.long)
            extra = {
                "coarse_labels": self.coarse_labels,
                "domains_train": ct[self.y_train],
                "domains_test": ct[self.y_test],
            }
        return Dataset(name, x_train, self.y_train, x_test, self.y_test, self.class_names, meta=meta, **extra)


__all__ = ["TextDataset"]
