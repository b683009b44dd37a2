"""A uniform, read-only view of a dataset source (folder or archives).

A user's ``source=`` may be an official archive, the folder it was extracted
to, or a folder holding the archives (and, for mini-ImageNet, the CSVs next
to ``images.zip``). :class:`SourceTree` turns all of these into one mapping
from relative POSIX paths to file bytes, so a dataset module parses one layout
whatever the packaging:

* plain files under a folder appear at their path relative to that folder;
* members of a zip appear at their path inside the zip (read in place);
* members of a tar are extracted (safely, see :mod:`kml.data.archives`) into a
  scratch folder first, then appear at their path inside the tar.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import tempfile
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from kml.data.archives import ZIP_SUFFIXES, check_member_name, file_digest, is_archive, open_zip, safe_extract
from kml.data.errors import DataError


@dataclass
class _ZipHandle:
    archive: zipfile.ZipFile
    lock: threading.Lock


class SourceTree:
    """Read-only file view over folders and archives.

    Args:
        sources: files (archives) or folders to include, in priority order: the
            first one holding a path wins.
        archive_patterns: glob patterns (file names) of archives found *inside*
            a source folder that are opened too (e.g. ``images_*.zip``).
        scratch: folder where tar archives are extracted; removed by
            :meth:`close`.
    """

    def __init__(self, sources: Sequence[Path], archive_patterns: Sequence[str] = (), scratch: Path | None = None):
        self._entries: dict[str, tuple] = {}
        self._zips: list[_ZipHandle] = []
        self._scratch_root = scratch
        self._scratch_made: list[Path] = []
        self.origins: list[dict] = []
        try:
            for source in sources:
                self._add_source(Path(source), archive_patterns)
        except BaseException:
            self.close()
            raise

    # ----------------------------------------------------------------- building
    def _add_source(self, source: Path, archive_patterns: Sequence[str]) -> None:
        if not source.exists():
            raise DataError(f"source {source} does not exist; pass source=<the archive or the folder holding it>")
        if source.is_file():
            if not is_archive(source):
                raise DataError(f"source {source} is not a zip or tar archive; pass the official archive or a folder")
            self._add_archive(source)
            return
        archives = []
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(source)
            for filename in sorted(filenames):
                rel = (rel_dir / filename).as_posix()
                if rel_dir == Path(".") and is_archive(filename) and _matches(filename, archive_patterns):
                    archives.append(source / filename)
                self._entries.setdefault(rel, ("file", Path(dirpath) / filename))
        self.origins.append({"folder": str(source.resolve())})
        for archive in archives:
            self._add_archive(archive)

    def _add_archive(self, archive: Path) -> None:
        self.origins.append(
            {"archive": archive.name, "bytes": archive.stat().st_size, "sha256": file_digest(archive, "sha256")}
        )
        if archive.name.lower().endswith(ZIP_SUFFIXES):
            handle = _ZipHandle(open_zip(archive), threading.Lock())
            self._zips.append(handle)
            for info in handle.archive.infolist():
                if info.is_dir():
                    continue
                rel = check_member_name(info.filename, archive)
                self._entries.setdefault(rel, ("zip", handle, info))
            return
        scratch_root = self._scratch_root or Path(tempfile.gettempdir())
        scratch_root.mkdir(parents=True, exist_ok=True)
        target = Path(tempfile.mkdtemp(prefix=".extract-", dir=scratch_root))
        self._scratch_made.append(target)
        safe_extract(archive, target)
        for dirpath, dirnames, filenames in os.walk(target):
            dirnames.sort()
            rel_dir = Path(dirpath).relative_to(target)
            for filename in sorted(filenames):
                self._entries.setdefault((rel_dir / filename).as_posix(), ("file", Path(dirpath) / filename))

    # ------------------------------------------------------------------ reading
    def files(self) -> list[str]:
        """All relative paths, sorted."""
        return sorted(self._entries)

    def __contains__(self, path: str) -> bool:
        return path in self._entries

    def match(self, pattern: str) -> list[re.Match]:
        """Regex matches (``re.fullmatch``) of ``pattern`` over all paths, in sorted path order."""
        regex = re.compile(pattern)
        return [m for p in self.files() if (m := regex.fullmatch(p))]

    def find_one(self, pattern: str, what: str, fix: str) -> str:
        """The single shortest path matching ``pattern`` (regex); DataError if none."""
        hits = [m.group(0) for m in self.match(pattern)]
        if not hits:
            raise DataError(f"{what} not found in the source; {fix}")
        return min(hits, key=lambda p: (p.count("/"), p))

    def read(self, path: str) -> bytes:
        """The bytes of one file (thread-safe)."""
        try:
            entry = self._entries[path]
        except KeyError:
            raise DataError(f"file {path!r} is missing from the source; use a complete copy of the dataset") from None
        try:
            if entry[0] == "file":
                return entry[1].read_bytes()
            handle, info = entry[1], entry[2]
            with handle.lock:
                return handle.archive.read(info)
        except (OSError, zipfile.BadZipFile, EOFError) as error:
            raise DataError(
                f"cannot read {path!r} from the source ({error}); the file or archive is corrupt: "
                "download it again"
            ) from error

    def read_text(self, path: str) -> str:
        """A text file, decoded as UTF-8 (latin-1 fallback)."""
        data = self.read(path)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")

    def close(self) -> None:
        """Close archives and remove extracted scratch folders."""
        for handle in self._zips:
            handle.archive.close()
        self._zips.clear()
        for folder in self._scratch_made:
            shutil.rmtree(folder, ignore_errors=True)
        self._scratch_made.clear()

    def __enter__(self) -> "SourceTree":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _matches(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def find_source(folder: Path, markers: Sequence[str]) -> Path | None:
    """Locate a dataset inside ``folder``.

    Returns ``folder`` when a file or folder directly inside it matches one of
    the glob ``markers``, else the first (sorted) direct subfolder for which
    that holds, else None. This lets ``source=`` name the dataset's own folder
    or a parent holding several datasets. When ``folder`` is itself the extracted
    top folder of an archive (its name is a marker, e.g. ``CUB_200_2011``), its
    parent is returned, so the dataset's paths keep their top folder.
    """
    folder = Path(folder)
    if folder.is_file():
        return folder if _matches(folder.name, markers) else None
    if not folder.is_dir():
        return None

    def holds(candidate: Path) -> bool:
        try:
            return any(_matches(child.name, markers) for child in candidate.iterdir())
        except OSError:
            return False

    if holds(folder):
        return folder
    if _matches(folder.name, markers):
        return folder.parent
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        if holds(child):
            return child
    return None
