"""Opening a scanned file for upload only if it is still the scanned file, beneath the
root, never through a symlink swapped in since."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from syncd.local.fs import FileChanged, ScanError, UnsafePath, open_checked
from syncd.model import LocalFile
from tests.local.test_scan import root, run, write

__all__ = ["root"]  # the fixture, shared with test_scan


def scanned(root: Path, rel: str) -> LocalFile:
    return run(root).files[rel]


def test_open_checked_reads_the_scanned_file(root: Path) -> None:
    write(root / "d" / "photo.jpg", b"content")
    (root / "link.jpg").symlink_to(root / "d" / "photo.jpg")
    for rel in ("d/photo.jpg", "link.jpg"):
        with open_checked(root, rel, scanned(root, rel)) as f:
            assert f.read() == b"content"


def test_open_checked_detects_size_change(root: Path) -> None:
    path = write(root / "photo.jpg", b"v1")
    expected = scanned(root, "photo.jpg")
    with path.open("ab") as f:
        f.write(b"more")
    with pytest.raises(FileChanged, match="changed since it was scanned") as info:
        open_checked(root, "photo.jpg", expected)
    assert info.value.path == "photo.jpg"
    assert isinstance(info.value, ScanError)


def test_open_checked_detects_swap(root: Path) -> None:
    write(root / "photo.jpg", b"v1")
    expected = scanned(root, "photo.jpg")
    write(root / "new.jpg", b"v2")  # same size, then atomically renamed over
    os.utime(root / "new.jpg", ns=(expected.mtime_ns, expected.mtime_ns))
    os.replace(root / "new.jpg", root / "photo.jpg")
    with pytest.raises(FileChanged):
        open_checked(root, "photo.jpg", expected)


def test_open_checked_detects_mtime_change(root: Path) -> None:
    path = write(root / "photo.jpg", b"v1")
    expected = scanned(root, "photo.jpg")
    os.utime(path, ns=(expected.mtime_ns + 1_000_000_000, expected.mtime_ns + 1_000_000_000))
    with pytest.raises(FileChanged):
        open_checked(root, "photo.jpg", expected)


def test_open_checked_refuses_symlink_retargeted_outside(root: Path, tmp_path: Path) -> None:
    write(root / "photo.jpg", b"public")
    secret = write(tmp_path / "secret.txt", b"secret")
    (root / "link.jpg").symlink_to(root / "photo.jpg")
    expected = scanned(root, "link.jpg")
    (root / "link.jpg").unlink()
    (root / "link.jpg").symlink_to(secret)
    with pytest.raises(UnsafePath, match="outside the folder") as info:
        open_checked(root, "link.jpg", expected)
    assert info.value.path == "link.jpg"


def test_open_checked_refuses_parent_retargeted_outside(root: Path, tmp_path: Path) -> None:
    write(root / "d" / "photo.jpg")
    write(tmp_path / "outside" / "photo.jpg")
    expected = scanned(root, "d/photo.jpg")
    shutil.rmtree(root / "d")
    (root / "d").symlink_to(tmp_path / "outside", target_is_directory=True)
    with pytest.raises(UnsafePath):
        open_checked(root, "d/photo.jpg", expected)


@pytest.mark.parametrize("rel", ["../secret.txt", "/etc/hostname", "", "."])
def test_open_checked_refuses_paths_outside(root: Path, tmp_path: Path, rel: str) -> None:
    write(tmp_path / "secret.txt")
    with pytest.raises(UnsafePath):
        open_checked(root, rel, LocalFile(rel, 1, 0, 0))


@pytest.mark.parametrize("component", ["d", "d/photo.jpg"])
def test_open_checked_never_follows_a_link_swapped_in_after_resolving(
    root: Path, monkeypatch: pytest.MonkeyPatch, component: str
) -> None:
    # Simulate the race: the path was symlink-free when resolved, then a link appeared.
    write(root / "real" / "photo.jpg")
    (root / component).parent.mkdir(exist_ok=True)
    target = root / "real" if component == "d" else root / "real" / "photo.jpg"
    (root / component).symlink_to(target)
    expected = scanned(root, "real/photo.jpg")
    monkeypatch.setattr(os.path, "realpath", os.path.abspath)
    with pytest.raises(FileChanged, match="replaced by a symlink"):
        open_checked(root, "d/photo.jpg", expected)


def test_open_checked_vanished_file(root: Path) -> None:
    path = write(root / "d" / "photo.jpg")
    expected = scanned(root, "d/photo.jpg")
    path.unlink()
    with pytest.raises(FileNotFoundError):
        open_checked(root, "d/photo.jpg", expected)
    shutil.rmtree(root / "d")
    write(root / "d", b"now a file")
    with pytest.raises(FileNotFoundError):
        open_checked(root, "d/photo.jpg", expected)


def test_open_checked_does_not_hang_on_a_fifo(root: Path) -> None:
    path = write(root / "photo.jpg")
    expected = scanned(root, "photo.jpg")
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(FileChanged, match="no longer a regular file"):
        open_checked(root, "photo.jpg", expected)
