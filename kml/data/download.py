"""Downloads of official archives, checksum-verified.

Files are fetched with torchvision's ``download_url`` into
``<root>/downloads/<dataset>/`` (kept, so a second preparation at another
image size needs no network) and verified against the official MD5 before
use. A file that is already there and verifies is not fetched again.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from kml.data.archives import file_digest, verify_checksum
from kml.data.errors import DataError


@dataclass(frozen=True)
class RemoteFile:
    """One official archive: where to get it and its MD5."""

    url: str
    filename: str
    md5: str


def downloads_dir(root: str | os.PathLike, dataset: str) -> Path:
    """``<root>/downloads/<dataset>``: where downloaded archives are kept."""
    return Path(root) / "downloads" / dataset


def _fetch(url: str, folder: Path, filename: str, md5: str) -> None:
    """Fetch one URL into ``folder/filename`` (torchvision's helper; replaced in tests)."""
    from torchvision.datasets.utils import download_url

    download_url(url, str(folder), filename=filename, md5=None)


def fetch(remote: RemoteFile, folder: Path, dataset: str) -> Path:
    """Download ``remote`` into ``folder`` unless a verified copy is there; return its path.

    Raises :class:`DataError` when the download fails or the checksum does not
    match (the bad file is removed so that the next attempt starts clean).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / remote.filename
    fix = (
        f"delete {path} and run the preparation again, or download {remote.url} yourself "
        f"and pass source=<folder holding it>"
    )
    if path.is_file():
        try:
            verify_checksum(path, remote.md5, "md5", fix=fix)
            return path
        except DataError:
            path.unlink()
    partial = folder / f".part-{remote.filename}"
    try:
        _fetch(remote.url, folder, partial.name, remote.md5)
    except Exception as error:  # network errors come in many types
        partial.unlink(missing_ok=True)
        raise DataError(
            f"cannot download {remote.url} for {dataset} ({error}); check the network, or download it yourself "
            f"and pass source=<folder holding {remote.filename}>"
        ) from error
    actual = file_digest(partial, "md5")
    if actual != remote.md5.lower():
        partial.unlink(missing_ok=True)
        raise DataError(
            f"wrong md5 checksum for {remote.filename} downloaded from {remote.url}: expected {remote.md5}, "
            f"got {actual} (the bad file was removed); run the preparation again, or download the file yourself "
            f"and pass source=<folder holding {remote.filename}>"
        )
    os.replace(partial, path)
    return path
