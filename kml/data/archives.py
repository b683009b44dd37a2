"""Archives: checksums and safe extraction.

Every archive a user downloads or points ``source=`` at goes through here. The
extraction helpers refuse any member whose name is absolute or climbs out of
the destination with ``..`` (path traversal), and any link or special file,
*before* writing anything: a crafted archive leaves the destination untouched.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tarfile
import zipfile
from pathlib import Path

from kml.data.errors import DataError

ZIP_SUFFIXES = (".zip",)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def is_archive(path: str | os.PathLike) -> bool:
    """True when ``path`` names a zip or tar archive (by its suffix)."""
    name = os.fspath(path).lower()
    return name.endswith(ZIP_SUFFIXES) or name.endswith(TAR_SUFFIXES)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk_size: int = 1 << 20) -> str:
    """Hex digest of a file's bytes (``algorithm`` is any :mod:`hashlib` name)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def verify_checksum(path: str | os.PathLike, expected: str, algorithm: str = "md5", *, fix: str = "") -> None:
    """Raise :class:`DataError` unless the file exists and has the expected digest.

    ``fix`` is appended to the message (for example how to fetch the file again).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"archive {path} is missing; {fix or 'download it again or pass source=<path>'}")
    actual = file_digest(path, algorithm)
    if actual.lower() != expected.lower():
        raise DataError(
            f"wrong {algorithm} checksum for {path}: expected {expected}, got {actual} "
            f"(incomplete or different file); {fix or 'delete it and download it again'}"
        )


def check_member_name(name: str, archive: str | os.PathLike = "") -> str:
    """Return the normalised relative POSIX path of an archive member.

    Raises :class:`DataError` for names that are absolute (``/x``, ``C:\\x``)
    or that leave the extraction folder through ``..``.
    """
    cleaned = name.replace("\\", "/")
    where = f" in {archive}" if archive else ""
    if cleaned.startswith("/") or (len(cleaned) > 1 and cleaned[1] == ":"):
        raise DataError(
            f"refusing archive member {name!r}{where}: absolute path (path traversal); "
            "use an untampered copy of the official archive"
        )
    normal = posixpath.normpath(cleaned)
    if normal == ".." or normal.startswith("../") or "/../" in f"/{cleaned}/":
        raise DataError(
            f"refusing archive member {name!r}{where}: '..' leaves the extraction folder (path traversal); "
            "use an untampered copy of the official archive"
        )
    return "" if normal == "." else normal


def _check_tar_members(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    members = []
    for member in tar.getmembers():
        check_member_name(member.name, archive)
        if member.issym() or member.islnk():
            raise DataError(
                f"refusing archive member {member.name!r} in {archive}: links are not allowed in dataset archives; "
                "use an untampered copy of the official archive"
            )
        if not (member.isfile() or member.isdir()):
            raise DataError(
                f"refusing archive member {member.name!r} in {archive}: special file (device or fifo); "
                "use an untampered copy of the official archive"
            )
        members.append(member)
    return members


def _open_tar(archive: Path) -> tarfile.TarFile:
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(
            f"cannot read archive {archive} ({error}); download it again or pass another source="
        ) from error


def open_zip(archive: str | os.PathLike) -> zipfile.ZipFile:
    """Open a zip archive, turning a corrupt file into a :class:`DataError`."""
    try:
        return zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError(
            f"cannot read archive {archive} ({error}); download it again or pass another source="
        ) from error


def safe_extract(archive: str | os.PathLike, destination: str | os.PathLike) -> Path:
    """Extract a zip or tar archive into ``destination`` (created if needed).

    All member names are checked first; if any is unsafe, nothing is written.
    Returns the destination folder.
    """
    archive = Path(archive)
    destination = Path(destination)
    name = archive.name.lower()
    if name.endswith(ZIP_SUFFIXES):
        with open_zip(archive) as zf:
            infos = zf.infolist()
            targets = [check_member_name(info.filename, archive) for info in infos]
            destination.mkdir(parents=True, exist_ok=True)
            for info, target in zip(infos, targets):
                if not target:
                    continue
                out = destination / target
                if info.is_dir():
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with zf.open(info) as src, open(out, "wb") as dst:
                        shutil.copyfileobj(src, dst, 1 << 20)
                except (zipfile.BadZipFile, OSError, EOFError) as error:
                    raise DataError(
                        f"cannot extract {info.filename!r} from {archive} ({error}); "
                        "the archive is corrupt: download it again"
                    ) from error
        return destination
    if name.endswith(TAR_SUFFIXES):
        with _open_tar(archive) as tar:
            try:
                members = _check_tar_members(tar, archive)
                destination.mkdir(parents=True, exist_ok=True)
                if hasattr(tarfile, "data_filter"):
                    tar.extractall(destination, members=members, filter="data")
                else:  # pragma: no cover - Python without extraction filters
                    tar.extractall(destination, members=members)
            except (tarfile.TarError, OSError, EOFError) as error:
                raise DataError(
                    f"cannot extract {archive} ({error}); the archive is corrupt: download it again"
                ) from error
        return destination
    raise DataError(f"{archive} is not a zip or tar archive; pass the official archive or its extracted folder")
