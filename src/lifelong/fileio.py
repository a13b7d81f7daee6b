"""Atomic file writes (a temporary file in the same folder, then ``os.replace``), used by every layer.

Files get the permissions of any newly created file (``0666`` minus the umask), not the
``0600`` of a temporary file; JSON is strict (no ``NaN`` / ``Infinity``, which other
JSON readers refuse).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any


def default_mode() -> int:
    """``0o666`` minus the process umask (the mode ``open()`` would give a new file)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 hex digest of a file's bytes (read in 1 MiB chunks)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _no_constant(name: str):
    raise ValueError(f"non-standard JSON constant {name}")


def loads_strict(text: str) -> Any:
    """``json.loads`` that refuses ``NaN`` / ``Infinity`` (``ValueError``), as strict JSON readers do."""
    return json.loads(text, parse_constant=_no_constant)


def finite_or_none(obj: Any) -> Any:
    """``obj`` with every NaN / infinite float replaced by ``None`` (JSON ``null``)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_none(v) for v in obj]
    return obj


def dumps_strict(obj: Any, **kwargs) -> str:
    """``json.dumps`` that refuses NaN and infinities (``ValueError``) instead of writing non-standard JSON."""
    return json.dumps(obj, allow_nan=False, **kwargs)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented, strict JSON atomically (``ValueError`` on NaN / infinity)."""
    return atomic_write_bytes(path, (dumps_strict(obj, indent=2, sort_keys=False) + "\n").encode())


def append_jsonl(path: str | os.PathLike, obj: Any) -> None:
    """Append one strict JSON line (a streamed log; each line is written whole with one call)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = dumps_strict(obj) + "\n"
    with open(path, "a", encoding="utf-8") as f:
        f.write(line)


class FolderLock:
    """An exclusive lock on a folder: ``<folder>/.lock`` holding the owner's pid.

    Taken with ``flock`` (released by the kernel if the process dies, so a killed run
    never leaves a stale lock behind) where the platform has it, else by creating the
    file exclusively. ``acquire`` raises :class:`~lifelong.errors.RunDirError` naming
    the owner's pid when another process holds it. Use as a context manager.
    """

    NAME = ".lock"

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / self.NAME
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        """Take the lock and write this process's pid into it; ``RunDirError`` when another process holds it."""
        from lifelong.errors import RunDirError

        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            fcntl = None
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | (0 if fcntl else os.O_EXCL), 0o644)
            except FileExistsError:  # pragma: no cover - not POSIX
                raise RunDirError(self._held_message(self._owner())) from None
            if fcntl is None:  # pragma: no cover
                break
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                owner = self._owner()
                os.close(fd)
                raise RunDirError(self._held_message(owner)) from None
            try:  # the holder before us may have removed the file after we opened it: lock the live one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Drop the lock and remove the lock file (nothing when not held)."""
        if self._fd is None:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)  # closing drops the flock
        self._fd = None

    def _owner(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def _held_message(self, owner: str) -> str:
        return (
            f"{self.folder} is in use by another lifelong process (pid {owner}, lock file {self.path}); "
            "wait for it to finish or stop it, or write elsewhere with --name"
        )

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
