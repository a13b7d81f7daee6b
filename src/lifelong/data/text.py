"""Real text-classification streams: CLINC150 and any labelled text file (DESIGN §4).

Both loaders read raw sentences, encode them once with a frozen sentence encoder
(all-MiniLM-L6-v2 by default, :mod:`lifelong.encoders.text`) through the feature
cache (:mod:`lifelong.data.feature_cache`) and return a :class:`Dataset` whose
inputs are the float32 sentence vectors; the raw texts stay in ``meta``.

With ``representation="tokens"`` they run no encoder at all: the inputs are the
encoder's token ids instead (:func:`tokenize_splits`; float32, right-padded), for
methods that train inside a text backbone (``lora-seq`` / ``codyra`` with
``backbone="minilm"``). Command line: ``--set data.representation=tokens``.

**CLINC150** (Larson et al., EMNLP-IJCNLP 2019, "An Evaluation Dataset for Intent
Classification and Out-of-Scope Prediction"; CC BY 3.0): 150 intents in 10 domains,
100 / 20 / 30 train / val / test utterances per intent, plus out-of-scope queries.
Class ids are ordered by domain (the order of ``domains.json``), so
``class_incremental(data, tasks=10, seed=-1)`` gives one domain (15 intents) per
experience; ``coarse_labels`` maps each intent to its domain.

**Data root.** The files are looked up in the folder given by ``data_root``, else
``LIFELONG_DATA``, else ``~/.cache/lifelong/data``: either that folder itself holds
them, or its ``clinc150/`` subfolder does. Where they are missing the loader stops with
one message naming the expected files and layout; only with ``download=True`` does it
fetch them from the dataset's public repository (``clinc/oos-eval`` on GitHub, pinned
commit, checked against their SHA-256) into ``<root>/clinc150``, leaving nothing behind
when that fails.
"""

from __future__ import annotations

import csv
import json
import os
import re
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from lifelong.data.dataset import Dataset, stratified_split
from lifelong.data.feature_cache import CacheInfo, FeatureCache, cached_features, summarize
from lifelong.errors import ConfigError, DataError
from lifelong.fileio import default_mode, sha256_file

CLINC150_URL = "https://raw.githubusercontent.com/clinc/oos-eval/828f8093932c8fe6ca7936c3d2e52903b1c523de/data/"
CLINC150_FILES = {
    "data_full.json": "36923c3705a59e08fe9c3883d8bc2dd966ef93e22cb78ac41171782a698d56e0",
    "domains.json": "b947b579d3b8e74b06f93b01083d8efaff2888b43a3e362533bd88a6e1211b3a",
}
CLINC150_LAYOUT = ("data_full.json: one JSON object with keys train, val, test, oos_train, oos_val, oos_test, "
                   "each a list of [text, intent] pairs; domains.json: one JSON object mapping each of the 10 "
                   "domains to its 15 intent names")
OOS_MODES = ("exclude", "features", "class")
REPRESENTATIONS = ("features", "tokens")


def default_data_root() -> Path:
    """``LIFELONG_DATA`` if set, else ``~/.cache/lifelong/data``."""
    env = os.environ.get("LIFELONG_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lifelong" / "data"


def dataset_dir(name: str, files: Sequence[str], data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``files`` of dataset ``name``: ``<root>`` itself or ``<root>/<name>``.

    When neither holds them, the folder where they belong (``<root>/<name>``, or
    ``<root>`` when it is already named ``name``) is returned.
    """
    root = Path(data_root).expanduser() if data_root is not None else default_data_root()
    for d in (root, root / name):
        if all((d / f).is_file() for f in files):
            return d
    for d in (root, root / name):  # some of the files: that is the folder meant
        if any((d / f).exists() for f in files):
            return d
    return root if root.name == name else root / name


def _download(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".download-")
    os.close(fd)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r, open(tmp, "wb") as f:
            while chunk := r.read(1 << 20):
                f.write(chunk)
        got = sha256_file(tmp)
        if got != sha256:
            raise OSError(f"{url} has SHA-256 {got}, expected {sha256}")
        os.chmod(tmp, default_mode())
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


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
            made = [d for d in (folder, *folder.parents) if not d.exists()]
            try:
                for f in missing:
                    _download(CLINC150_URL + f, folder / f, CLINC150_FILES[f])
                why = ""
            except OSError as e:  # urllib's URLError and timeouts are OSErrors
                why = f"the download from {CLINC150_URL} failed ({e})"
                for d in made:  # innermost first: remove only the folders this call created, if empty
                    try:
                        d.rmdir()
                    except OSError:
                        break
        if why:
            raise DataError(f"CLINC150 files not found: expected {folder / 'data_full.json'} and "
                            f"{folder / 'domains.json'} (missing: {', '.join(missing)}; {CLINC150_LAYOUT}); "
                            f"{why}. Copy the files of github.com/clinc/oos-eval data/ there, or point "
                            "--data-root / LIFELONG_DATA / data_root at the folder holding them")
    raw = _read_json_file(folder / "data_full.json", "CLINC150's data_full.json")
    domains = _read_json_file(folder / "domains.json", "CLINC150's domains.json")
    need = ("train", "val", "test", "oos_train", "oos_val", "oos_test")
    if not isinstance(raw, dict) or any(k not in raw for k in need):
        raise DataError(f"{folder / 'data_full.json'} does not have the CLINC150 layout: {CLINC150_LAYOUT}")
    if not isinstance(domains, dict) or not all(isinstance(v, list) and all(isinstance(i, str) for i in v)
                                                for v in domains.values()):
        raise DataError(f"{folder / 'domains.json'} must be one JSON object mapping each domain name to a list "
                        f"of intent names ({CLINC150_LAYOUT}); restore the file from github.com/clinc/oos-eval")
    splits = {}
    for k in need:
        try:
            splits[k] = ([str(t) for t, _ in raw[k]], [str(c) for _, c in raw[k]])
        except (TypeError, ValueError) as e:
            raise DataError(f"{folder / 'data_full.json'}[{k!r}] must be a list of [text, intent] pairs") from e
    intents = [i for v in domains.values() for i in v]
    unknown = sorted(set(splits["train"][1]) - set(intents))
    if unknown or len(set(intents)) != len(intents):
        raise DataError(f"{folder / 'domains.json'} must list every intent of data_full.json exactly once; "
                        f"missing {unknown[:5]}")
    return Clinc150Files(folder, splits, {str(k): [str(i) for i in v] for k, v in domains.items()})


def _read_json_file(path: Path, what: str):
    """The JSON document in ``path``; a :class:`DataError` naming that file when it cannot be read."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{what} ({path}) cannot be read: {e}; check its permissions or copy it again") from e
    except ValueError as e:
        raise DataError(f"{what} ({path}) is not valid JSON ({e}); restore the file from "
                        "github.com/clinc/oos-eval") from e


# ---- encoding through the cache ------------------------------------------------------------
def _encoder(encoder, precision: str, threads: int | None, batch_size: int, progress: bool | None):
    """A ready encoder (anything with ``encode`` and ``fingerprint``) or a TextEncoder by name/path."""
    from lifelong.encoders.text import make_text_encoder

    return make_text_encoder(encoder, precision=precision, threads=threads, batch_size=batch_size,
                             progress=progress)


def encode_splits(encoder, dataset: str, texts: dict[str, list[str]], *, cache_dir=None,
                  full: dict[str, list[str]] | None = None, refresh: bool = False
                  ) -> tuple[dict[str, torch.Tensor], dict[str, CacheInfo]]:
    """Encode each split's texts through the feature cache; returns (features, cache info) per split.

    ``full`` optionally gives, per split, the complete split the texts were subsampled
    from: when that complete split is already cached, the subset's rows are read from
    it instead of being encoded. ``cache_dir=False`` disables the cache.
    """
    out, infos = {}, {}
    for split, t in texts.items():
        if cache_dir is not False and not refresh and full and split in full and len(full[split]) > len(t):
            hit = _subset_from_full(encoder, dataset, split, t, full[split], cache_dir)
            if hit is not None:
                out[split], infos[split] = hit
                continue
        out[split], infos[split] = cached_features(encoder, t, dataset=dataset, split=split,
                                                   cache_dir=cache_dir, refresh=refresh)
    return out, infos


def _subset_from_full(encoder, dataset, split, texts, full_texts, cache_dir):
    """Rows of ``texts`` read from the cached features of ``full_texts``, or None when not cached."""
    cache = FeatureCache(None if cache_dir in (None, True) else cache_dir)
    x, info = cache.get(encoder, full_texts, dataset=dataset, split=split)
    if x is None:
        return None
    pos: dict[str, int] = {}
    for i, s in enumerate(full_texts):
        pos.setdefault(s, i)
    if any(s not in pos for s in texts):
        return None
    rows = torch.tensor([pos[s] for s in texts], dtype=torch.long)
    saved = max(0.0, (info.saved_seconds + info.load_seconds) * len(texts) / len(full_texts) - info.load_seconds)
    return x.index_select(0, rows), CacheInfo(True, 0.0, info.load_seconds, saved, info.path,
                                              "rows of the cached full split")


# ---- token ids (text backbones) --------------------------------------------------------------
def _check_max_length(max_length) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, (int, np.integer)) or max_length < 2:
        raise ConfigError(f"max_length must be an integer >= 2 tokens, got {max_length!r}")


def _check_representation(representation: str, encoder, max_length: int) -> None:
    if representation not in REPRESENTATIONS:
        raise ConfigError(f"representation must be one of {REPRESENTATIONS} (features: frozen sentence vectors; "
                          f"tokens: token ids for a text backbone), got {representation!r}")
    if representation == "tokens":
        if not isinstance(encoder, (str, os.PathLike)):
            raise ConfigError("representation='tokens' reads the tokenizer of the encoder, so give encoder as "
                              "'minilm' or the path of a local Hugging Face model folder, not an encoder object")
        _check_max_length(max_length)


def tokenize_splits(texts: dict[str, Sequence[str]], encoder: str | os.PathLike = "minilm",
                    max_length: int = 64) -> tuple[dict[str, torch.Tensor], dict]:
    """Token ids of each split's sentences with ``encoder``'s own tokenizer; no model is run.

    Returns (split -> float32 ``(n, width)`` tensor of ids right-padded with the pad id,
    meta). All splits share one width: the longest tokenised sentence, at most
    ``max_length`` (longer ones are truncated, keeping the closing special token).
    ``meta`` holds ``tokenizer`` (the model folder), ``max_length``, ``pad_id`` and
    ``inputs="token ids"``. The inputs of ``lora-seq``'s text backbones (which pool
    like all-MiniLM-L6-v2, Reimers & Gurevych 2019).
    """
    from lifelong.encoders.text import resolve_encoder_path

    _check_max_length(max_length)
    try:
        from transformers import AutoTokenizer
    except ImportError as e:  # pragma: no cover - transformers is in requirements.lock
        raise ConfigError("token ids need transformers; install it with `pip install lifelong[text]`") from e
    path = resolve_encoder_path(encoder)
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    ids = {s: tok(list(t), truncation=True, max_length=int(max_length))["input_ids"] if len(t) else []
           for s, t in texts.items()}
    width = max((len(row) for rows in ids.values() for row in rows), default=1)
    xs = {}
    for s, rows in ids.items():
        x = torch.full((len(rows), width), float(pad))
        lengths = torch.tensor([len(r) for r in rows], dtype=torch.long)
        mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
        x[mask] = torch.tensor([i for r in rows for i in r], dtype=torch.float32)
        xs[s] = x
    return xs, {"tokenizer": str(path), "max_length": int(max_length), "pad_id": int(pad), "inputs": "token ids"}


def _subsample(labels: np.ndarray, keep_classes: np.ndarray, max_per_class: int | None,
               rng: np.random.Generator) -> np.ndarray:
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


def load_clinc150(*, data_root: str | os.PathLike | None = None, encoder="minilm",
                  cache_dir: str | os.PathLike | None | bool = None, eval_split: str = "test",
                  domains: Sequence[int | str] | None = None, max_per_class: int | None = None,
                  oos: str = "exclude", seed: int = 0, precision: str = "fp32", threads: int | None = None,
                  batch_size: int = 128, download: bool = False, progress: bool | None = None,
                  refresh: bool = False, representation: str = "features", max_length: int = 64) -> Dataset:
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
            token ids (:func:`tokenize_splits`), no encoder run and no cache used, for
            text backbones (``lora-seq``/``codyra`` with ``backbone="minilm"``); the
            same inputs as ``lora_seq.text_token_dataset`` of the features dataset.
            ``oos="features"`` needs ``"features"``.
        max_length: longest token sequence kept (``representation="tokens"``).

    Returns a :class:`Dataset` with ``coarse_labels`` = domain id per intent,
    ``domains_train/test`` = domain id per example, and ``meta`` holding
    ``domain_names``, ``texts_train``/``texts_test``, ``oos_texts``, ``encoder`` and
    ``feature_cache`` (hit, encode/load/saved seconds per split); with tokens,
    ``tokenizer``, ``max_length``, ``pad_id`` and ``inputs="token ids"`` instead of the
    last two, and the name ``"clinc150-tokens"``.
    """
    _check_representation(representation, encoder, max_length)
    if representation == "tokens" and oos == "features":
        raise ConfigError("oos='features' adds sentence features, which representation='tokens' does not compute; "
                          "use oos='exclude' (texts in meta['oos_texts']) or oos='class', or "
                          "representation='features'")
    if eval_split not in ("test", "val"):
        raise ConfigError(f"eval_split must be 'test' or 'val', got {eval_split!r}")
    if oos not in OOS_MODES:
        raise ConfigError(f"oos must be one of {OOS_MODES}, got {oos!r}")
    if max_per_class is not None and max_per_class < 1:
        raise ConfigError(f"max_per_class must be >= 1, got {max_per_class}")
    files = read_clinc150(data_root, download=download)
    all_domains = list(files.domains)
    if domains is None:
        chosen = list(range(len(all_domains)))
    else:
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
                raise ConfigError(f"unknown CLINC150 domain {d!r}; give ids 0..{len(all_domains) - 1} or names: "
                                  f"{', '.join(all_domains)}")
        chosen = sorted(set(chosen))
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
    meta = {"source": str(files.path), "domain_names": domain_names, "eval_split": eval_split,
            "source_files": [str((files.path / f).resolve()) for f in CLINC150_FILES],
            "domains": {d: list(files.domains[d]) for d in domain_names if d in files.domains},
            "texts_train": texts["train"], "texts_test": texts[eval_split], "oos": oos,
            "oos_texts": oos_texts if oos != "class" else {},
            "citation": "Larson et al., EMNLP-IJCNLP 2019 (CLINC150, CC BY 3.0)"}
    coarse_t = torch.tensor(coarse, dtype=torch.long)
    y_tr, y_te = torch.as_tensor(labels["train"]), torch.as_tensor(labels[eval_split])
    if representation == "tokens":
        ids, tok_meta = tokenize_splits({"train": texts["train"], "test": texts[eval_split]}, encoder, max_length)
        meta.update(tok_meta)
        return Dataset("clinc150-tokens", ids["train"], y_tr, ids["test"], y_te, class_names, coarse_labels=coarse,
                       domains_train=coarse_t[y_tr], domains_test=coarse_t[y_te], meta=meta)
    enc = _encoder(encoder, precision, threads, batch_size, progress)
    feats, infos = encode_splits(enc, "clinc150", texts, cache_dir=cache_dir, full=full, refresh=refresh)
    citation = meta.pop("citation")  # keys in their historical order: ..., encoder, citation
    meta.update(encoder=getattr(enc, "identity", {"fingerprint": enc.fingerprint}), citation=citation)
    if oos == "features":
        oos_x, oos_infos = encode_splits(enc, "clinc150", {"oos_train": oos_texts["train"],
                                                           f"oos_{eval_split}": oos_texts["test"]},
                                         cache_dir=cache_dir, refresh=refresh)
        meta["oos_features"] = {"train": oos_x["oos_train"], "test": oos_x[f"oos_{eval_split}"]}
        infos.update(oos_infos)
    meta["feature_cache"] = summarize(infos)
    x_tr, x_te = feats["train"], feats[eval_split]
    return Dataset("clinc150", x_tr, y_tr, x_te, y_te, class_names, coarse_labels=coarse,
                   domains_train=coarse_t[y_tr], domains_test=coarse_t[y_te], meta=meta)


# ---- any labelled text file ------------------------------------------------------------------
TEXT_FORMATS = ("csv", "tsv", "json", "jsonl")
_FORMAT_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl"}


@dataclass
class TextTable:
    """Rows of a labelled text file: texts, label values and optional coarse values (as read)."""

    path: Path
    texts: list[str]
    labels: list
    coarse: list | None = None
    columns: list[str] = field(default_factory=list)


def read_text_file(path: str | os.PathLike, *, text_column: str | int = "text", label_column: str | int = "label",
                   coarse_column: str | int | None = None, format: str | None = None,
                   json_key: str | None = None) -> TextTable:
    """Read texts and labels from a CSV, TSV, JSON or JSON Lines file.

    CSV/TSV files need a header row naming the columns. JSON files hold a list of
    objects (or of ``[text, label]`` lists, columns then given by position), or an
    object whose ``json_key`` entry is such a list. JSON Lines files hold one object
    per line. Raises :class:`DataError` naming the file and row for a missing file,
    a missing column, an empty text or a missing label.
    """
    path = Path(path).expanduser()
    if format is not None and format not in TEXT_FORMATS:
        raise ConfigError(f"unknown text format {format!r}; give format= one of {TEXT_FORMATS}")
    fmt = format or _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt not in TEXT_FORMATS:
        raise ConfigError(f"cannot tell the format of {path}; name it .csv/.tsv/.json/.jsonl or pass "
                          f"format= one of {TEXT_FORMATS}")
    if not path.is_file():
        raise DataError(f"text file {path} does not exist; give the path of a {fmt.upper()} file with a "
                        f"{text_column!r} and a {label_column!r} column")
    try:
        rows = _read_rows(path, fmt, json_key)
    except (OSError, ValueError, csv.Error) as e:
        raise DataError(f"{path} is not a readable {fmt.upper()} file: {e}") from e
    if not rows:
        raise DataError(f"{path} holds no rows; give at least one labelled text")
    columns = list(rows[0].keys()) if isinstance(rows[0], dict) else list(range(len(rows[0])))
    if not isinstance(rows[0], dict):
        text_column = 0 if text_column == "text" else text_column
        label_column = 1 if label_column == "label" else label_column
    wanted = [("text", text_column), ("label", label_column)]
    if coarse_column is not None:
        wanted.append(("coarse", coarse_column))
    cols: dict[str, list] = {}
    for role, col in wanted:
        values = []
        for r, row in enumerate(rows):
            try:
                v = row[col]
            except (KeyError, IndexError, TypeError):
                raise DataError(f"{path}: row {r + 1} has no {role} column {col!r}; columns found: "
                                f"{', '.join(map(str, columns))}. Name the right one with "
                                f"{role}_column=...") from None
            if v is None or (isinstance(v, str) and not v.strip()):
                what = "text" if role == "text" else f"{role} value"
                raise DataError(f"{path}: row {r + 1} has an empty {what} in column {col!r}; fill it in or "
                                "remove the row")
            values.append(v)
        cols[role] = values
    return TextTable(path, [str(t) for t in cols["text"]], cols["label"], cols.get("coarse"),
                     [str(c) for c in columns])


def _read_rows(path: Path, fmt: str, json_key: str | None) -> list:
    if fmt in ("csv", "tsv"):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f, delimiter="\t" if fmt == "tsv" else ","))
    if fmt == "jsonl":
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except ValueError as e:
                        raise ValueError(f"line {n}: {e}") from None
        return rows
    data = json.loads(path.read_text(encoding="utf-8"))
    if isinstance(data, dict):
        if json_key is None or json_key not in data:
            raise ValueError(f"the top level is an object; pass json_key= one of {sorted(data)}")
        data = data[json_key]
    if not isinstance(data, list):
        raise ValueError("expected a list of rows")
    return data


def _label_order(values: list) -> list:
    """Unique label values, numeric order when all are integers, else sorted as strings."""
    uniq = sorted({str(v) for v in values})
    if all(re.fullmatch(r"-?\d+", u) for u in uniq):
        return sorted(uniq, key=int)
    return uniq


def load_text_file(path: str | os.PathLike, *, text_column: str | int = "text",
                   label_column: str | int = "label", coarse_column: str | int | None = None,
                   test_path: str | os.PathLike | None = None, test_fraction: float = 0.2, seed: int = 0,
                   name: str | None = None, format: str | None = None, json_key: str | None = None,
                   encoder="minilm", cache_dir: str | os.PathLike | None | bool = None,
                   precision: str = "fp32", threads: int | None = None, batch_size: int = 128,
                   progress: bool | None = None, refresh: bool = False, representation: str = "features",
                   max_length: int = 64) -> Dataset:
    """Any labelled text file (CSV/TSV/JSON/JSONL) as cached sentence features (or token ids).

    Class ids follow the sorted label values (numeric order for integer labels); with
    ``coarse_column`` they are grouped by coarse value first and ``coarse_labels``
    is set (a class must have one coarse value). Without ``test_path`` a stratified
    ``test_fraction`` of each class becomes the test split (seeded by ``seed``).
    Python: ``load_dataset("text-file", path="intents.csv", label_column="intent")``;
    command line: ``lifelong run --data text-file --set data.path=intents.csv``.
    ``representation="tokens"`` returns ``encoder``'s token ids (at most ``max_length``;
    :func:`tokenize_splits`) without running the encoder, named ``"<name>-tokens"``,
    for text backbones (``lora-seq``/``codyra`` with ``backbone="minilm"``).
    """
    _check_representation(representation, encoder, max_length)
    kw = dict(text_column=text_column, label_column=label_column, coarse_column=coarse_column, format=format,
              json_key=json_key)
    train = read_text_file(path, **kw)
    test = read_text_file(test_path, **kw) if test_path is not None else None
    name = name or train.path.stem
    labels = train.labels + (test.labels if test else [])
    names = _label_order(labels)
    coarse_names = None
    if coarse_column is not None:
        coarse_vals = train.coarse + (test.coarse if test else [])
        parent: dict[str, str] = {}
        for lab, c in zip(map(str, labels), map(str, coarse_vals)):
            if parent.setdefault(lab, c) != c:
                raise DataError(f"{train.path}: label {lab!r} appears under two coarse values "
                                f"({parent[lab]!r} and {c!r}); each label needs one parent")
        coarse_names = _label_order(list(parent.values()))
        names = sorted(names, key=lambda n: (coarse_names.index(parent[n]), names.index(n)))
    cid = {n: i for i, n in enumerate(names)}
    y = np.array([cid[str(v)] for v in train.labels], dtype=np.int64)
    if test is None:
        if len(names) < 1 or min(np.bincount(y)) < 2:
            raise DataError(f"{train.path}: every label needs at least 2 rows to split off a test set; "
                            "give test_path= or more rows")
        tr, te = stratified_split(y, test_fraction, seed)
        texts = {"train": [train.texts[i] for i in tr], "test": [train.texts[i] for i in te]}
        y_tr, y_te = y[tr], y[te]
    else:
        only_test = sorted({str(v) for v in test.labels} - {str(v) for v in train.labels})
        if only_test:
            raise DataError(f"{test.path} has {len(only_test)} label(s) that never occur in {train.path}: "
                            f"{', '.join(map(repr, only_test[:5]))}{' ...' if len(only_test) > 5 else ''}; no "
                            "learner can predict a class it never trained on, so add training rows for them or "
                            "drop those test rows")
        texts = {"train": train.texts, "test": test.texts}
        y_tr, y_te = y, np.array([cid[str(v)] for v in test.labels], dtype=np.int64)
    coarse = [coarse_names.index(parent[n]) for n in names] if coarse_names else None
    meta = {"source": str(train.path), "test_source": str(test.path) if test else None,
            "texts_train": texts["train"], "texts_test": texts["test"], "coarse_names": coarse_names,
            "source_files": [str(t.path.resolve()) for t in (train, test) if t is not None]}
    if representation == "tokens":
        feats, tok_meta = tokenize_splits(texts, encoder, max_length)
        meta.update(tok_meta)
        name = f"{name}-tokens"
    else:
        enc = _encoder(encoder, precision, threads, batch_size, progress)
        feats, infos = encode_splits(enc, name, texts, cache_dir=cache_dir, refresh=refresh)
        meta.update(encoder=getattr(enc, "identity", {"fingerprint": enc.fingerprint}),
                    feature_cache=summarize(infos))
    y_tr_t, y_te_t = torch.as_tensor(y_tr), torch.as_tensor(y_te)
    extra = {}
    if coarse is not None:
        ct = torch.tensor(coarse, dtype=torch.long)
        extra = {"coarse_labels": coarse, "domains_train": ct[y_tr_t], "domains_test": ct[y_te_t]}
    return Dataset(name, feats["train"], y_tr_t, feats["test"], y_te_t, names, meta=meta, **extra)


__all__ = ["load_clinc150", "read_clinc150", "load_text_file", "read_text_file", "default_data_root",
           "dataset_dir", "encode_splits", "tokenize_splits", "REPRESENTATIONS", "Clinc150Files", "TextTable"]
