"""Atomic result-file writes (re-exported from :mod:`lifelong.fileio`)."""

from lifelong.fileio import append_jsonl, atomic_write_bytes, atomic_write_json

__all__ = ["atomic_write_bytes", "atomic_write_json", "append_jsonl"]
