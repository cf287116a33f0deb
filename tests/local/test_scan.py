from __future__ import annotations

import contextlib
import gc
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syncd.errors import SyncdError
from syncd.local.filters import SyncdFilter
from syncd.local.fs import (
    RootUnavailable,
    root_status,
)
from syncd.local.scan import ScanResult, scan
from syncd.model import LocalFile

NAMES = [
    "plain.jpg",
    "with space.jpg",
    "hash#tag.png",
    "100%.tif",
    "what?.gif",
    "a&b+c.pdf",
    'it\'s "quoted".psd',
    "café crème.jpg",
    "日本語の写真.png",
    "emoji 📷.heic",
    "-leading-dash.jpg",
]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    path = tmp_path / "root"
    path.mkdir()
    return path


def write(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def run(root: Path, *exclude: str) -> ScanResult:
    return scan(root, SyncdFilter(root, exclude))


def skips(result: ScanResult) -> dict[str, str]:
    return {s.path: s.reason for s in result.skipped}


def test_nested_tree_with_odd_names(root: Path) -> None:
    expected = {}
    for i, name in enumerate(NAMES):
        rel = f"{name[:3]} dir/sub {i}/{name}"
        expected[rel] = write(root / rel, name.encode() * (i + 1))
    write(root / "top.jpg")
    expected["top.jpg"] = root / "top.jpg"

    result = run(root)

    assert set(result.files) == set(expected)
    for rel, path in expected.items():
        st = path.stat()
        assert result.files[rel] == LocalFile(rel, st.st_size, st.st_mtime_ns, st.st_ino)
    assert result.skipped == []
    assert result.dirs == 2 * len(NAMES)


def test_empty_root(root: Path) -> None:
    assert run(root) == ScanResult({}, [], 0)


def test_builtin_ignores_are_pruned_not_reported(root: Path) -> None:
    write(root / "keep.jpg")
    write(root / ".git" / "objects" / "ab" / "cdef")
    write(root / "a" / "@eaDir" / "keep.jpg" / "SYNOTHUMB.jpg")
    write(root / "a" / ".DS_Store")
    write(root / "a" / "clip.mp4.part")
    write(root / "a" / "~$report.docx")
    write(root / "a" / "report.partial.pdf")
    seen: list[tuple[str, bool]] = []

    result = scan(root, SyncdFilter(root), on_ignored=lambda rel, d: seen.append((rel, d)))

    assert set(result.files) == {"keep.jpg", "a/report.partial.pdf"}
    assert result.skipped == []
    assert sorted(seen) == [
        (".git", True),
        ("a/.DS_Store", False),
        ("a/@eaDir", True),
        ("a/clip.mp4.part", False),
        ("a/~$report.docx", False),
    ]
    assert result.dirs == 1  # only "a": ignored directories are never listed


def test_user_excludes(root: Path) -> None:
    for rel in ["a.jpg", "art.psd", "keep.psd", "cache/x.jpg", "b/cache/y.jpg", "build/z.jpg"]:
        write(root / rel)
    write(root / "b" / "build" / "z.jpg")
    result = run(root, "cache/", "*.psd", "!keep.psd", "/build/")
    assert set(result.files) == {"a.jpg", "keep.psd", "b/build/z.jpg"}
    assert result.skipped == []


def test_symlink_outside_root_is_never_followed(root: Path, tmp_path: Path) -> None:
    secret = write(tmp_path / "outside" / "secret.txt", b"secret")
    evil = write(tmp_path / "root-evil" / "x.jpg")  # shares the root's name as a prefix
    (root / "secret.txt").symlink_to(secret)
    (root / "evil.jpg").symlink_to(evil)
    (root / "shadow").symlink_to("/etc/shadow")
    (root / "up.jpg").symlink_to("../outside/secret.txt")
    (root / "outdir").symlink_to(tmp_path / "outside")
    (root / "gone-outside").symlink_to(tmp_path / "outside" / "missing")

    result = run(root)

    assert result.files == {}
    links = ["secret.txt", "evil.jpg", "shadow", "up.jpg", "outdir", "gone-outside"]
    assert skips(result) == dict.fromkeys(links, "symlink points outside the folder")


def test_symlink_to_file_inside_root_uses_target_stat(root: Path) -> None:
    target = write(root / "real" / "photo.jpg", b"0123456789")
    (root / "abs.jpg").symlink_to(target)
    (root / "real" / "rel.jpg").symlink_to("photo.jpg")
    (root / "chain.jpg").symlink_to(root / "abs.jpg")

    result = run(root)

    st = target.stat()
    assert set(result.files) == {"real/photo.jpg", "abs.jpg", "real/rel.jpg", "chain.jpg"}
    for rel in result.files:
        assert result.files[rel] == LocalFile(rel, 10, st.st_mtime_ns, st.st_ino)


def test_symlink_to_directory_is_skipped(root: Path) -> None:
    write(root / "real" / "photo.jpg")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    (root / "real" / "loop").symlink_to("..", target_is_directory=True)
    (root / "self").symlink_to(root, target_is_directory=True)

    result = run(root)

    assert set(result.files) == {"real/photo.jpg"}  # uploaded once, under its real path
    assert skips(result) == {
        "alias": "symlink to a directory is not followed",
        "real/loop": "symlink to a directory is not followed",
        "self": "symlink to a directory is not followed",
    }


def test_broken_symlinks(root: Path) -> None:
    (root / "dangling.jpg").symlink_to(root / "missing.jpg")
    (root / "ping").symlink_to(root / "pong")
    (root / "pong").symlink_to(root / "ping")

    reasons = skips(run(root))

    assert reasons["dangling.jpg"] == "broken symlink"
    assert reasons["ping"].startswith("broken symlink")
    assert reasons["pong"].startswith("broken symlink")


def test_symlink_to_a_fifo_inside(root: Path) -> None:
    os.mkfifo(root / "pipe")
    (root / "pipe-link").symlink_to(root / "pipe")
    reasons = skips(run(root))
    assert reasons["pipe-link"] == "symlink to something not a regular file (fifo)"


def test_fifo_and_socket_are_skipped(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    os.mkfifo(root / "pipe")
    # AF_UNIX paths are limited to 108 bytes and tmp_path can be longer: bind a relative name
    monkeypatch.chdir(root)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind("sock")
        result = run(root)
    assert result.files == {}
    assert skips(result) == {
        "pipe": "not a regular file (fifo)",
        "sock": "not a regular file (socket)",
    }


def test_character_device_is_skipped(root: Path) -> None:
    try:
        os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating device nodes needs CAP_MKNOD")
    assert skips(run(root)) == {"null": "not a regular file (character device)"}


def test_names_that_are_not_utf8(root: Path) -> None:
    base = os.fsencode(root)
    os.close(os.open(base + b"/bad\xff.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    os.mkdir(base + b"/dir\xfe")
    os.close(os.open(base + b"/dir\xfe/inside.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    write(root / "ok" / "good.jpg")
    os.close(os.open(base + b"/ok/worse\xc3.jpg", os.O_CREAT | os.O_WRONLY, 0o644))
    os.close(os.open(base + b"/ok/junk\xff.tmp", os.O_CREAT | os.O_WRONLY, 0o644))  # ignored

    result = run(root)

    assert set(result.files) == {"ok/good.jpg"}
    utf8 = "name is not valid UTF-8; rename it to sync it"
    assert skips(result) == {
        "bad\\xff.jpg": utf8,
        "dir\\xfe": utf8,  # the whole subtree
        "ok/worse\\xc3.jpg": utf8,
    }
    assert result.dirs == 1


def test_names_with_control_characters_are_skipped_with_one_warning_each(root: Path) -> None:
    controls = [chr(c) for c in range(1, 32)] + ["\x7f"]  # NUL cannot be in a name
    for i, c in enumerate(controls):
        write(root / f"f{i}-{c}-x.jpg")
    write(root / "dir\x1b[31m" / "inside.jpg")  # an ANSI escape in a directory name
    write(root / "fine-é.jpg")

    result = run(root)

    assert set(result.files) == {"fine-é.jpg"}
    reasons = skips(result)
    assert len(reasons) == len(controls) + 1  # the directory is one skip, not one per file
    assert all("control characters" in r for r in reasons.values())


@pytest.mark.skipif(os.geteuid() == 0, reason="root can list a chmod 000 directory")
def test_unreadable_directory_chmod(root: Path) -> None:
    write(root / "locked" / "a.jpg")
    write(root / "open" / "b.jpg")
    (root / "locked").chmod(0)
    try:
        result = run(root)
    finally:
        (root / "locked").chmod(0o755)
    assert set(result.files) == {"open/b.jpg"}
    assert skips(result) == {"locked": "cannot be read (Permission denied)"}


@contextlib.contextmanager
def patched_scandir(
    monkeypatch: pytest.MonkeyPatch, hook: Callable[[int, Any], Iterator[Any]]
) -> Iterator[None]:
    """Route `os.scandir(fd)` through `hook(fd, entries)`, to inject errors and races."""
    real = os.scandir

    @contextlib.contextmanager
    def fake(path: Any) -> Iterator[Iterator[Any]]:
        with real(path) as entries:
            yield hook(path, entries)

    monkeypatch.setattr(os, "scandir", fake)
    yield
    monkeypatch.setattr(os, "scandir", real)


def same_dir(fd: int, path: Path) -> bool:
    return isinstance(fd, int) and os.path.samestat(os.fstat(fd), path.stat())


@pytest.mark.parametrize("fails", ["open", "listing"])
def test_unreadable_directory_is_skipped(
    root: Path, monkeypatch: pytest.MonkeyPatch, fails: str
) -> None:
    # works as root too: opening or listing fails as it would for chmod 000
    write(root / "locked" / "a.jpg")
    write(root / "open" / "b.jpg")
    denied = PermissionError(13, "Permission denied")
    real_open = os.open

    def fake_open(path: Any, *args: Any, **kwargs: Any) -> int:
        if fails == "open" and path == str(root / "locked"):
            raise denied
        return real_open(path, *args, **kwargs)

    def hook(fd: int, entries: Any) -> Iterator[Any]:
        if fails == "listing" and same_dir(fd, root / "locked"):
            raise denied
        yield from entries

    monkeypatch.setattr(os, "open", fake_open)
    with patched_scandir(monkeypatch, hook):
        result = run(root)
    assert set(result.files) == {"open/b.jpg"}
    assert skips(result) == {"locked": "cannot be read (Permission denied)"}
    assert result.dirs == 1


def test_entries_vanishing_mid_walk_are_dropped(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(root / "stays.jpg")
    write(root / "vanishes.jpg")
    write(root / "gone" / "x.jpg")

    def hook(fd: int, entries: Any) -> Iterator[Any]:
        for entry in entries:
            if entry.name == "vanishes.jpg":
                os.unlink(entry.name, dir_fd=fd)  # after readdir, before its lstat
            yield entry
        if same_dir(fd, root):
            shutil.rmtree(root / "gone")  # after it was listed, before it is opened

    with patched_scandir(monkeypatch, hook):
        result = run(root)
    assert result == ScanResult({"stays.jpg": result.files["stays.jpg"]}, [], 0)


def test_unstatable_entry_is_skipped(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # e.g. a directory with read but no search permission: names list, lstat fails
    write(root / "denied.jpg")
    write(root / "fine.jpg")

    class Denied:
        def __init__(self, entry: os.DirEntry[str]) -> None:
            self.name = entry.name

        def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
            raise PermissionError(13, "Permission denied")

    def hook(fd: int, entries: Any) -> Iterator[Any]:
        for entry in entries:
            yield Denied(entry) if entry.name == "denied.jpg" else entry

    with patched_scandir(monkeypatch, hook):
        result = run(root)
    assert set(result.files) == {"fine.jpg"}
    assert skips(result) == {"denied.jpg": "cannot be read (Permission denied)"}


def test_directory_swapped_mid_walk_is_unknown_not_empty(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(root / "swapped" / "x.jpg")
    write(root / "linked" / "y.jpg")
    write(tmp_path / "elsewhere" / "z.jpg")

    def hook(fd: int, entries: Any) -> Iterator[Any]:
        yield from entries
        if same_dir(fd, root):
            (root / "swapped").rename(tmp_path / "old")
            write(root / "swapped" / "new.jpg")
            (root / "linked").rename(tmp_path / "old2")
            (root / "linked").symlink_to(tmp_path / "elsewhere")

    with patched_scandir(monkeypatch, hook):
        result = run(root)
    assert result.files == {}
    assert skips(result) == {
        "swapped": "changed during the scan",
        "linked": "changed during the scan",
    }


def test_root_problems(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = tmp_path / "missing"
    a_file = write(tmp_path / "file")
    assert root_status(missing) == f"{missing} does not exist"
    assert root_status(a_file / "sub") == f"{a_file / 'sub'} does not exist"
    assert root_status(a_file) == f"{a_file} is not a directory"
    assert root_status(tmp_path) is None
    for bad in (missing, a_file):
        with pytest.raises(RootUnavailable) as info:
            scan(bad, SyncdFilter(bad))
        assert str(info.value) == root_status(bad)
        assert isinstance(info.value, SyncdError)

    def refuse(path: Any) -> Any:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "scandir", refuse)
    assert root_status(tmp_path) == f"{tmp_path} cannot be read (Permission denied)"
    with pytest.raises(RootUnavailable, match="cannot be read"):
        scan(tmp_path, SyncdFilter(tmp_path))


def test_root_given_through_a_symlink(root: Path, tmp_path: Path) -> None:
    write(root / "a" / "photo.jpg")
    (root / "a" / "link.jpg").symlink_to(root / "a" / "photo.jpg")
    alias = tmp_path / "alias"
    alias.symlink_to(root, target_is_directory=True)
    result = run(alias)
    assert set(result.files) == {"a/photo.jpg", "a/link.jpg"}


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_state_is_restored(root: Path, enabled: bool) -> None:
    write(root / "a.jpg")
    was = gc.isenabled()
    try:
        if not enabled:
            gc.disable()
        run(root)
        assert gc.isenabled() is enabled
    finally:
        if was:
            gc.enable()


def test_a_walk_reports_progress_once_per_directory(tmp_path: Path) -> None:
    for d in ("a", "a/b", "c"):
        (tmp_path / d).mkdir()
        (tmp_path / d / "f.txt").write_text("x")
    calls: list[None] = []
    result = scan(tmp_path, SyncdFilter(tmp_path), on_progress=lambda: calls.append(None))
    assert len(result.files) == 3
    assert len(calls) == 3  # a, a/b and c (the root is listed before the walk)
