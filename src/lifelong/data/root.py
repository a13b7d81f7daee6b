"""Where the dataset files live: the one rule every loader and the run folders follow.

An explicit ``data_root`` wins, else the ``LIFELONG_DATA`` environment variable, else
``~/.cache/lifelong/data``. A dataset's files sit either in that folder itself or in
its subfolder named after the dataset (``<root>/clinc150``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path


def default_data_root(data_root: str | os.PathLike | None = None) -> Path:
    """``data_root`` if given, else ``LIFELONG_DATA`` if set, else ``~/.cache/lifelong/data``."""
    if data_root is not None:
        return Path(data_root).expanduser()
    env = os.environ.get("LIFELONG_DATA")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lifelong" / "data"


def dataset_dir(name: str, files: Sequence[str], data_root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``files`` of dataset ``name``: ``<root>`` itself or ``<root>/<name>``.

    When neither holds them, the folder where they belong (``<root>/<name>``, or
    ``<root>`` when it is already named ``name``) is returned.
    """
    root = default_data_root(data_root)
    for d in (root, root / name):
        if all((d / f).is_file() for f in files):
            return d
    for d in (root, root / name):  # some of the files: that is the folder meant
        if any((d / f).exists() for f in files):
            return d
    return root if root.name == name else root / name


__all__ = ["default_data_root", "dataset_dir"]
