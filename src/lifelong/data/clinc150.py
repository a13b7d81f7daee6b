"""CLINC150 intents: reading the raw files, and the ``clinc150`` loader.

Larson et al., "An Evaluation Dataset for Intent Classification and Out-of-Scope
Prediction" (EMNLP-IJCNLP 2019; CC BY 3.0): 150 intents in 10 domains, 100 / 20 / 30
train / val / test utterances per intent, plus out-of-scope queries. Class ids are
ordered by domain (the order of ``domains.json``), so ``class_incremental(data,
tasks=10, seed=-1)`` gives one domain (15 intents) per experience. Files are looked up
under the data root (:mod:`lifelong.data.root`) and fetched only with ``download=True``
from ``clinc/oos-eval`` on GitHub (pinned commit, SHA-256 checked).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lifelong.data.dataset import Dataset
from lifelong.data.download import download_files
from lifelong.data.encode import encode_dataset
from lifelong.data.feature_cache import Encoder
from lifelong.data.root import dataset_dir
from lifelong.data.texts import TextDataset
from lifelong.data.tokens import check_representation, tokenize_dataset
from lifelong.errors import ConfigError, DataError

CLINC150_URL = "https://raw.githubusercontent.com/clinc/oos-eval/828f8093932c8fe6ca7936c3d2e52903b1c523de/data/"
CLINC150_FILES = {
    "data_full.json": "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
    "domains.json": "b947b579d3b8e74b06f93b01083d8efaff2888b43a3e362533bd88a6e1211b3a",
}
CLINC150_LAYOUT = (
    "data_full.json: one JSON object with keys train, val, test, oos_train, oos_val, oos_test, "
    "each a list of [text, intent] pairs; domains.json: one JSON object mapping each of the 10 "
    "domains to its 15 intent names"
)
OOS_MODES = ("exclude", "features", "class")


@dataclass
class Clinc150Files:
    """The raw CLINC150 files: split -> (texts, intents), and domain -> intents in file order."""

    path: Path
    splits: dict[str, tuple[list[str], list[str]]]
    domains: dict[str, list[str]]


def read_clinc150(data_root: str | os.PathLike | None = None, *, download: bool = False) -> Clinc150Files:
    """Read the CLINC150 files (downloading them first only with ``download=True``); see the module doc.

    A failed download leaves nothing behind (no half-written file, no empty folder).
    """
    folder = dataset_dir("clinc150", list(CLINC150_FILES), data_root)
    missing = [f for f in CLINC150_FILES if not (folder / f).is_file()]
    if missing:
        why = "download=False (lifelong downloads nothing unless asked)"
        if download:
            try:
                download_files(CLINC150_URL, folder, {f: CLINC150_FILES[f] for f in missing})
                why = ""
            except OSError as e:  # urllib's URLError and timeouts are OSErrors
                why = f"the download from {CLINC150_URL} failed ({e})"
        if why:
            raise DataError(
                f"CLINC150 files not found: expected {folder / 'data_full.json'} and "
                f"{folder / 'domains.json'} (missing: {', '.join(missing)}; {CLINC150_LAYOUT}); "
                f"{why}. Copy the files of github.com/clinc/oos-eval data/ there, or point "
                "--data-root / LIFELONG_DATA / data_root at the folder holding them"
            )
    raw = _read_json_file(folder / "data_full.json", "CLINC150's data_full.json")
    domains = _read_json_file(folder / "domains.json", "CLINC150's domains.json")
    need = ("train", "val", "test", "oos_train", "oos_val", "oos_test")
    if not isinstance(raw, dict) or any(k not in raw for k in need):
        raise DataError(f"{folder / 'data_full.json'} does not have the CLINC150 layout: {CLINC150_LAYOUT}")
    if not isinstance(domains, dict) or not all(
        isinstance(v, list) and all(isinstance(i, str) for i in v) for v in domains.values()
    ):
        raise DataError(
            f"{folder / 'domains.json'} must be one JSON object mapping each domain name to a list "
            f"of intent names ({CLINC150_LAYOUT}); restore the file from github.com/clinc/oos-eval"
        )
    splits = {}
    for k in need:
        try:
            splits[k] = ([str(t) for t, _ in raw[k]], [str(c) for _, c in raw[k]])
        except (TypeError, ValueError) as e:
            raise DataError(f"{folder / 'data_full.json'}[{k!r}] must be a list of [text, intent] pairs") from e
    intents = [i for v in domains.values() for i in v]
    unknown = sorted(set(splits["train"][1]) - set(intents))
    if unknown or len(set(intents)) != len(intents):
        raise DataError(
            f"{folder / 'domains.json'} must list every intent of data_full.json exactly once; missing {unknown[:5]}"
        )
    return Clinc150Files(folder, splits, {str(k): [str(i) for i in v] for k, v in domains.items()})


def _read_json_file(path: Path, what: str):
    """The JSON document in ``path``; a :class:`DataError` naming that file when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{what} ({path}) cannot be read: {e}; check its permissions or copy it again") from e
    except ValueError as e:
        raise DataError(
            f"{what} ({path}) is not valid JSON ({e}); restore the file from github.com/clinc/oos-eval"
        ) from e


def _subsample(
    labels: np.ndarray, keep_classes: np.ndarray, max_per_class: int | None, rng: np.random.Generator
) -> np.ndarray:
    """Indices of the examples of ``keep_classes``, at most ``max_per_class`` each (seeded), in file order."""
    idx = np.flatnonzero(np.isin(labels, keep_classes))
    if max_per_class is None:
        return idx
    chosen = []
    for c in keep_classes:
        ic = idx[labels[idx] == c]
        if len(ic) > max_per_class:
            ic = rng.choice(ic, size=max_per_class, replace=False)
        chosen.append(ic)
    return np.sort(np.concatenate(chosen)) if chosen else idx[:0]


def _chosen_domains(domains: Sequence[int | str] | str | int | None, all_domains: list[str]) -> list[int]:
    """Sorted ids of ``domains`` (ids, names, or one comma-separated string of them; None: all)."""
    if domains is None:
        return list(range(len(all_domains)))
    if isinstance(domains, str) and "," in domains:  # the command line's data.domains=0,1
        domains = [int(d) if d.strip().isdigit() else d.strip() for d in domains.split(",") if d.strip()]
    if isinstance(domains, (str, int)):
        domains = [domains]
    chosen = []
    for d in domains:
        if isinstance(d, str) and d in all_domains:
            chosen.append(all_domains.index(d))
        elif isinstance(d, (int, np.integer)) and 0 <= int(d) < len(all_domains):
            chosen.append(int(d))
        else:
            raise ConfigError(
                f"unknown CLINC150 domain {d!r}; give ids 0..{len(all_domains) - 1} or names: {', '.join(all_domains)}"
            )
    return sorted(set(chosen))


def clinc150_texts(
    data_root: str | os.PathLike | None = None,
    *,
    eval_split: str = "test",
    domains: Sequence[int | str] | None = None,
    max_per_class: int | None = None,
    oos: str = "exclude",
    seed: int = 0,
    download: bool = False,
) -> TextDataset:
    """The CLINC150 sentences and intent ids of the chosen domains (see :func:`load_clinc150` for the options).

    Its splits are ``"train"`` and ``eval_split``, the names its cached features have.
    """
    if eval_split not in ("test", "val"):
        raise ConfigError(f"eval_split must be 'test' or 'val', got {eval_split!r}")
    if oos not in OOS_MODES:
        raise ConfigError(f"oos must be one of {OOS_MODES}, got {oos!r}")
    if max_per_class is not None and max_per_class < 1:
        raise ConfigError(f"max_per_class must be >= 1, got {max_per_class}")
    files = read_clinc150(data_root, download=download)
    all_domains = list(files.domains)
    chosen = _chosen_domains(domains, all_domains)
    domain_names = [all_domains[d] for d in chosen]
    class_names = [i for d in domain_names for i in files.domains[d]]
    coarse = [k for k, d in enumerate(domain_names) for _ in files.domains[d]]
    if oos == "class":
        class_names.append("oos")
        coarse.append(len(domain_names))
        domain_names = [*domain_names, "oos"]
    cid = {name: i for i, name in enumerate(class_names)}

    rng = np.random.default_rng(seed)
    keep = np.arange(len(class_names))
    texts, labels, full = {}, {}, {}
    for src in ("train", eval_split):  # cache entries are named after CLINC's own splits
        t, c = files.splits[src]
        if oos == "class":
            t, c = t + files.splits[f"oos_{src}"][0], c + files.splits[f"oos_{src}"][1]
        y_all = np.array([cid.get(i, -1) for i in c], dtype=np.int64)
        idx = _subsample(y_all, keep, max_per_class, rng)
        texts[src] = [t[i] for i in idx]
        labels[src] = y_all[idx]
        full[src] = t
    oos_texts = {"train": files.splits["oos_train"][0], "test": files.splits[f"oos_{eval_split}"][0]}
    meta = {
        "source": str(files.path),
        "domain_names": domain_names,
        "eval_split": eval_split,
        "source_files": [str((files.path / f).resolve()) for f in CLINC150_FILES],
        "domains": {d: list(files.domains[d]) for d in domain_names if d in files.domains},
        "texts_train": texts["train"],
        "texts_test": texts[eval_split],
        "oos": oos,
        "oos_texts": oos_texts if oos != "class" else {},
    }
    return TextDataset(
        "clinc150",
        texts,
        torch.as_tensor(labels["train"]),
        torch.as_tensor(labels[eval_split]),
        class_names,
        coarse,
        meta,
        test_split=eval_split,
        full=full,
        citation="Larson et al., EMNLP-IJCNLP 2019 (CLINC150, CC BY 3.0)",
    )


# ``Encoder`` comes first in ``encoder``'s annotation: lifelong.values passes an object through
# unchanged for it, where ``str`` first would turn a Path into a string.
def load_clinc150(
    *,
    data_root: str | os.PathLike | None = None,
    encoder: Encoder | str | os.PathLike = "minilm",
    cache_dir: str | os.PathLike | None | bool = None,
    eval_split: str = "test",
    domains: Sequence[int | str] | None = None,
    max_per_class: int | None = None,
    oos: str = "exclude",
    seed: int = 0,
    precision: str = "fp32",
    threads: int | None = None,
    batch_size: int = 128,
    download: bool = False,
    progress: bool | None = None,
    refresh: bool = False,
    representation: str = "features",
    max_length: int = 64,
) -> Dataset:
    """CLINC150 intents (Larson et al. 2019) as cached 384-d MiniLM sentence features (or token ids).

    Args:
        data_root: folder holding ``data_full.json`` and ``domains.json`` (or their
            ``clinc150/`` subfolder); default ``LIFELONG_DATA`` or ``~/.cache/lifelong/data``.
        encoder: ``"minilm"``, a local Hugging Face model folder, or a ready encoder.
        cache_dir: feature cache folder (default ``LIFELONG_CACHE`` or
            ``~/.cache/lifelong/features``); ``False`` disables the cache.
        eval_split: CLINC split used as the dataset's test split: ``"test"`` or ``"val"``.
        domains: subset of domains (ids in ``domains.json`` order, or names, or one
            comma-separated string of them such as ``"0,1"``); class ids are renumbered
            over the kept domains, still grouped by domain.
        max_per_class: keep at most this many examples per intent in train and in the
            evaluation split (seeded by ``seed``), for quick runs.
        oos: out-of-scope queries: ``"exclude"`` (their texts in ``meta["oos_texts"]``),
            ``"features"`` (also their features in ``meta["oos_features"]``), or
            ``"class"`` (one extra class ``"oos"`` in an extra coarse group ``"oos"``).
        seed: seed of the ``max_per_class`` subsample.
        precision, threads, batch_size, progress: passed to the text encoder.
        download: fetch missing files from the public repository (off by default: nothing is
            downloaded unless asked).
        refresh: re-encode even when the cache holds the features.
        representation: ``"features"`` (sentence vectors) or ``"tokens"``: the encoder's
            token ids (:func:`~lifelong.data.tokens.tokenize_splits`), no encoder run and no
            cache used, for text backbones (``lora-seq``/``codyra`` with ``backbone="minilm"``);
            the same inputs as :func:`~lifelong.data.tokens.text_token_dataset` of the features
            dataset. ``oos="features"`` needs ``"features"``.
        max_length: longest token sequence kept (``representation="tokens"``).

    Returns a :class:`Dataset` with ``coarse_labels`` = domain id per intent,
    ``domains_train/test`` = domain id per example, and ``meta`` holding
    ``domain_names``, ``texts_train``/``texts_test``, ``oos_texts``, ``encoder`` and
    ``feature_cache`` (hit, encode/load/saved seconds per split); with tokens,
    ``tokenizer``, ``max_length``, ``pad_id`` and ``inputs="token ids"`` instead of the
    last two, and the name ``"clinc150-tokens"``.
    """
    check_representation(representation, encoder, max_length)
    if representation == "tokens" and oos == "features":
        raise ConfigError(
            "oos='features' adds sentence features, which representation='tokens' does not compute; "
            "use oos='exclude' (texts in meta['oos_texts']) or oos='class', or "
            "representation='features'"
        )
    texts = clinc150_texts(
        data_root,
        eval_split=eval_split,
        domains=domains,
        max_per_class=max_per_class,
        oos=oos,
        seed=seed,
        download=download,
    )
    if representation == "tokens":
        return tokenize_dataset(texts, encoder, max_length)
    extra = None
    if oos == "features":
        oos_texts = texts.meta["oos_texts"]
        extra = {
            "oos_features": {
                "train": ("oos_train", oos_texts["train"]),
                "test": (f"oos_{eval_split}", oos_texts["test"]),
            }
        }
    return encode_dataset(
        texts,
        encoder,
        cache_dir=cache_dir,
        refresh=refresh,
        precision=precision,
        threads=threads,
        batch_size=batch_size,
        progress=progress,
        extra_features=extra,
    )


__all__ = [
    "load_clinc150",
    "read_clinc150",
    "clinc150_texts",
    "Clinc150Files",
    "CLINC150_FILES",
    "CLINC150_URL",
    "OOS_MODES",
]
