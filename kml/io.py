"""Atomic file writes: a reader never sees a half-written file.

Everything is written to a temporary file in the target's folder, flushed and
fsync'ed, then renamed over the target (``os.replace`` is atomic on POSIX), and
the folder is fsync'ed so the rename survives a power loss.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

from kml.errors import KmlError

__all__ = [
    "read_jsonl",
    "WriteError",
    "atomic_write",
    "atomic_write_text",
    "atomic_write_json",
    "fsync_dir",
    "fsync_file",
    "current_umask",
    "remove_stale_temporaries",
]


class WriteError(KmlError):
    """An output file cannot be written (read-only place, disk full, ...)."""


def fsync_dir(path: str | Path) -> None:
    """Flush a directory entry (after a rename) to disk (a no-op where directories
    cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    """Flush a written file's contents to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def current_umask() -> int:
    """The process umask (read without changing it for longer than one call)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write(file)`` on a temporary file, then atomically move it to ``path``.

    Raises:
        WriteError: the folder cannot be created or written (the target is untouched).
    """
    path = Path(path)
    for folder in (path.parent, *path.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise WriteError(f"cannot write {path}: {folder} is a file, not a folder; choose another location")
            break
    try:
        _atomic_write(path, write)
    except OSError as err:
        raise WriteError(
            f"cannot write {path} ({err.strerror or err}); "
            "choose a writable location (and check the free disk space)"
        ) from None


def remove_stale_temporaries(folder: str | Path) -> None:
    """Delete temporary files that a killed :func:`atomic_write` left in ``folder``."""
    folder = Path(folder)
    if folder.is_dir():
        for stale in folder.glob(".*.tmp"):
            try:
                stale.unlink()
            except OSError:
                pass


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~current_umask())  # mkstemp's 0600 -> the usual permissions
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a JSON-lines file (``metrics.jsonl``); a torn line (a run killed while
    appending) is skipped, and a missing file has none."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records
