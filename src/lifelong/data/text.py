"""The text datasets' names under their first import path, ``lifelong.data.text``.

Each job has its own module: where data lives (:mod:`~lifelong.data.root`), fetching
(:mod:`~lifelong.data.download`), CLINC150 (:mod:`~lifelong.data.clinc150`), any
labelled text file (:mod:`~lifelong.data.textfile`), sentence features
(:mod:`~lifelong.data.encode`) and token ids (:mod:`~lifelong.data.tokens`). New code
imports from those; this module only re-exports their public names.
"""

from __future__ import annotations

from lifelong.data.clinc150 import (
    CLINC150_FILES,
    CLINC150_LAYOUT,
    CLINC150_URL,
    OOS_MODES,
    Clinc150Files,
    load_clinc150,
    read_clinc150,
)
from lifelong.data.encode import encode_splits
from lifelong.data.root import dataset_dir, default_data_root
from lifelong.data.textfile import TEXT_FORMATS, TextTable, load_text_file, read_text_file
from lifelong.data.tokens import REPRESENTATIONS, tokenize_splits

__all__ = [
    "load_clinc150",
    "read_clinc150",
    "load_text_file",
    "read_text_file",
    "default_data_root",
    "dataset_dir",
    "encode_splits",
    "tokenize_splits",
    "REPRESENTATIONS",
    "Clinc150Files",
    "TextTable",
    "CLINC150_FILES",
    "CLINC150_LAYOUT",
    "CLINC150_URL",
    "OOS_MODES",
    "TEXT_FORMATS",
]
