"""Safe extraction, checksums and checksum-verified downloads (no network)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
import zipfile

import pytest

from kml.data import DataError, file_digest, prepare_dataset, safe_extract, verify_checksum
from kml.data import download as download_module
from kml.data.archives import check_member_name
from kml.data.datasets import REAL_SPECS
from kml.data.download import RemoteFile, fetch


def _zip(path, members):
    with zipfile.ZipFile(path, "w") as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)
    return path


def _tar(path, members, links=()):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        for name, target in links:
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return path


@pytest.mark.parametrize("bad", ["../evil.txt", "ok/../../evil.txt", "/etc/evil.txt", "C:\\evil.txt", "a/../../b"])
def test_zip_with_traversal_member_is_refused_and_nothing_written(tmp_path, bad):
    archive = _zip(tmp_path / "bad.zip", {"good/first.txt": b"fine", bad: b"gotcha"})
    out = tmp_path / "out"
    with pytest.raises(DataError) as info:
        safe_extract(archive, out)
    message = str(info.value)
    assert "path traversal" in message and repr(bad) in message and "official archive" in message
    assert not out.exists()
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("bad", ["../evil.txt", "/tmp/evil-kml-test.txt", "x/../../evil.txt"])
def test_tar_with_traversal_member_is_refused_and_nothing_written(tmp_path, bad):
    archive = _tar(tmp_path / "bad.tar.gz", {"good/first.txt": b"fine", bad: b"gotcha"})
    out = tmp_path / "out"
    with pytest.raises(DataError, match="path traversal"):
        safe_extract(archive, out)
    assert not out.exists()
    assert not (tmp_path / "evil.txt").exists()


def test_tar_with_symlink_is_refused(tmp_path):
    archive = _tar(tmp_path / "link.tar.gz", {"good/first.txt": b"fine"}, links=[("good/link", "/etc/passwd")])
    with pytest.raises(DataError, match="links are not allowed"):
        safe_extract(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_safe_archives_extract_fully(tmp_path):
    members = {"top/a.txt": b"alpha", "top/sub/b.bin": bytes(range(256))}
    for archive in (_zip(tmp_path / "ok.zip", members), _tar(tmp_path / "ok.tgz", members)):
        out = safe_extract(archive, tmp_path / archive.name.replace(".", "_"))
        assert (out / "top" / "a.txt").read_bytes() == b"alpha"
        assert (out / "top" / "sub" / "b.bin").read_bytes() == bytes(range(256))


def test_member_names_are_normalised():
    assert check_member_name("a/./b/c.png") == "a/b/c.png"
    assert check_member_name("dir/") == "dir"


def test_corrupt_archive_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"this is not a zip file at all")
    with pytest.raises(DataError, match=r"cannot read archive .*broken\.zip.*download it again"):
        safe_extract(bad, tmp_path / "out")


def test_checksums(tmp_path):
    path = tmp_path / "file.bin"
    path.write_bytes(b"kml" * 1000)
    assert file_digest(path, "md5") == hashlib.md5(b"kml" * 1000).hexdigest()
    assert file_digest(path) == hashlib.sha256(b"kml" * 1000).hexdigest()
    verify_checksum(path, hashlib.md5(b"kml" * 1000).hexdigest())
    with pytest.raises(DataError) as info:
        verify_checksum(path, "0" * 32, fix="fetch it again")
    message = str(info.value)
    assert "wrong md5 checksum" in message and "0" * 32 in message and "fetch it again" in message
    with pytest.raises(DataError, match="is missing"):
        verify_checksum(tmp_path / "absent.zip", "0" * 32)


def test_official_urls_and_checksums_match_torchvision():
    """Where torchvision knows a dataset, our URL and MD5 are its."""
    from torchvision.datasets import CIFAR100, Omniglot

    omniglot = {r.filename: r for r in REAL_SPECS["omniglot"].remote_files}
    for stem, md5 in Omniglot.zips_md5.items():
        assert omniglot[stem + ".zip"].md5 == md5
        assert omniglot[stem + ".zip"].url == f"{Omniglot.download_url_prefix}/{stem}.zip"
    (cifar,) = REAL_SPECS["fc100"].remote_files
    assert (cifar.url, cifar.filename, cifar.md5) == (CIFAR100.url, CIFAR100.filename, CIFAR100.tgz_md5)
    assert REAL_SPECS["miniimagenet"].remote_files == ()  # no official URL: source= required
    for spec in REAL_SPECS.values():
        for remote in spec.remote_files:
            assert len(remote.md5) == 32 and remote.url.startswith(("http://", "https://"))


@pytest.fixture
def fake_network(monkeypatch, tmp_path):
    """Route downloads to local files: ``served[url] = path``; records fetched URLs."""
    served: dict[str, object] = {}
    fetched: list[str] = []

    def _fetch(url, folder, filename, md5):
        fetched.append(url)
        if url not in served:
            raise OSError("network unreachable")
        shutil.copyfile(served[url], folder / filename)

    monkeypatch.setattr(download_module, "_fetch", _fetch)
    return served, fetched


def test_fetch_verifies_and_keeps_download(tmp_path, fake_network):
    served, fetched = fake_network
    payload = tmp_path / "payload.zip"
    payload.write_bytes(b"archive bytes")
    remote = RemoteFile("https://example.org/a.zip", "a.zip", hashlib.md5(b"archive bytes").hexdigest())
    served[remote.url] = payload
    path = fetch(remote, tmp_path / "downloads", "demo")
    assert path.read_bytes() == b"archive bytes" and fetched == [remote.url]
    fetch(remote, tmp_path / "downloads", "demo")  # verified copy present: no second download
    assert fetched == [remote.url]


def test_fetch_checksum_mismatch_removes_file(tmp_path, fake_network):
    served, _ = fake_network
    payload = tmp_path / "payload.zip"
    payload.write_bytes(b"tampered bytes")
    remote = RemoteFile("https://example.org/a.zip", "a.zip", "d41d8cd98f00b204e9800998ecf8427e")
    served[remote.url] = payload
    with pytest.raises(DataError) as info:
        fetch(remote, tmp_path / "downloads", "demo")
    message = str(info.value)
    assert "wrong md5 checksum for a.zip" in message and remote.url in message and "source=" in message
    assert list((tmp_path / "downloads").iterdir()) == []


def test_fetch_network_failure_names_the_fix(tmp_path, fake_network):
    remote = RemoteFile("https://example.org/missing.zip", "missing.zip", "0" * 32)
    with pytest.raises(DataError, match=r"cannot download https://example.org/missing.zip.*source="):
        fetch(remote, tmp_path / "downloads", "demo")


def test_prepare_downloads_verified_archive(tmp_path, fake_network, data_builders, monkeypatch):
    """dataset=fc100 with no source: fetch (mocked), verify the MD5, prepare; a bad MD5 prepares nothing."""
    served, fetched = fake_network
    archive = data_builders.cifar100(tmp_path / "server")
    spec = REAL_SPECS["fc100"]
    good = RemoteFile(spec.remote_files[0].url, spec.remote_files[0].filename, file_digest(archive, "md5"))
    served[good.url] = archive
    root = tmp_path / "data"

    monkeypatch.setattr(type(spec), "remote_files", (RemoteFile(good.url, good.filename, "f" * 32),))
    with pytest.raises(DataError, match="wrong md5 checksum for cifar-100-python.tar.gz"):
        prepare_dataset("fc100", root, 16, verbose=False)
    assert not (root / "fc100" / "16").exists()
    assert not (root / "downloads" / "fc100" / good.filename).exists()

    monkeypatch.setattr(type(spec), "remote_files", (good,))
    folder = prepare_dataset("fc100", root, 16, verbose=False)
    assert (root / "downloads" / "fc100" / good.filename).is_file()
    manifest = json.loads((folder / "manifest.json").read_text())
    assert [manifest["splits"][s]["num_classes"] for s in ("train", "val", "test")] == [60, 20, 20]
    archives = [entry for entry in manifest["sources"] if "archive" in entry]
    assert archives == [{"archive": good.filename, "bytes": archive.stat().st_size, "sha256": file_digest(archive)}]

    # download=false uses (and verifies) the kept archive; a corrupted copy is reported
    (root / "downloads" / "fc100" / good.filename).write_bytes(b"corrupted")
    with pytest.raises(DataError, match=r"wrong md5 checksum .*download=true"):
        prepare_dataset("fc100", root, 20, download=False, verbose=False)
    with pytest.raises(DataError, match="missing from"):
        prepare_dataset("fc100", tmp_path / "other", 20, download=False, verbose=False)


def test_miniimagenet_without_source_explains_where_to_get_it(tmp_path):
    with pytest.raises(DataError) as info:
        prepare_dataset("miniimagenet", tmp_path, 16, verbose=False)
    assert "no official download" in str(info.value) and "source=" in str(info.value)
