"""Fetching dataset files from a pinned public URL, checked against their SHA-256.

Nothing is downloaded unless a loader is asked to (``download=True``). A file is written
to a temporary name and moved into place only once its checksum matches, and a failed
fetch removes the folders it created, so a failure leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from lifelong.fileio import default_mode, sha256_file


def download_file(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> None:
    """Fetch ``url`` to ``dest`` if its SHA-256 is ``sha256``; an :class:`OSError` otherwise (no file left)."""
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


def download_files(base_url: str, folder: Path, files: Mapping[str, str]) -> None:
    """Fetch each ``name -> sha256`` of ``files`` from ``base_url + name`` into ``folder``.

    Raises :class:`OSError` (urllib's URLError and timeouts are OSErrors) after removing
    the folders this call created, where they are empty.
    """
    made = [d for d in (folder, *folder.parents) if not d.exists()]
    try:
        for f, sha256 in files.items():
            download_file(base_url + f, folder / f, sha256)
    except OSError:
        for d in made:  # innermost first: remove only the folders this call created, if empty
            try:
                d.rmdir()
            except OSError:
                break
        raise


__all__ = ["download_file", "download_files"]
