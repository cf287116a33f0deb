"""`SortedWalk`: the walk `scan` makes, streamed in SQLite's path order in stretches that
tile the path space, so a re-run can be compared with the state a stretch at a time."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from syncd.local.filters import SyncdFilter
from syncd.local.fs import RootUnavailable
from syncd.local.scan import SortedWalk, scan
from tests.local.test_scan import NAMES, write

# Names whose order as whole paths differs from a naive walk's (space, '-', '.', '0' sort
# around '/'), and code points from one to four UTF-8 bytes.
TRICKY = ["a", "a b", "a-b", "a.b", "a0", "a_", "Z", "é", "日本", "📷", "{x}"]


def tricky_tree(root: Path) -> set[str]:
    paths = set()
    for d in TRICKY:
        for f in TRICKY:
            paths.add(f"{d}/{f}.jpg")
            paths.add(f"{d}/{d}/{f}")
    for f in [*TRICKY, *NAMES]:
        paths.add(f"{f}.top")
    for rel in paths:
        write(root / rel, rel.encode())
    return paths


def walked(root: Path, *exclude: str) -> tuple[list[str], SortedWalk]:
    walk = SortedWalk(root, SyncdFilter(root, exclude))
    paths: list[str] = []
    start: str | None = ""
    for end, rows in walk:
        assert start is not None, "a stretch after the end of the tree"
        for row in rows:
            assert row[0] >= start
            assert end is None or row[0] < end
        paths += [row[0] for row in rows]
        start = end
    assert start is None, "the last stretch must reach the end of the tree"
    return paths, walk


def test_paths_come_in_sqlite_order(tmp_path: Path) -> None:
    root = tmp_path / "root"
    expected = tricky_tree(root)
    paths, _ = walked(root)
    assert set(paths) == expected
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE files (path TEXT PRIMARY KEY) WITHOUT ROWID")
    db.executemany("INSERT INTO files VALUES (?)", ((p,) for p in expected))
    assert paths == [r[0] for r in db.execute("SELECT path FROM files ORDER BY path")]
    assert paths == sorted(expected)


def test_agrees_with_scan(tmp_path: Path) -> None:
    root = tmp_path / "root"
    tricky_tree(root)
    write(root / ".git" / "config")  # pruned, not reported
    write(root / "skip" / "me.tmp")
    os.symlink("/etc/hostname", root / "a" / "outside")
    os.symlink(root / "a" / "a.jpg", root / "Z" / "inside")
    os.mkfifo(root / "é" / "pipe")
    (root / "bad\x1bname").write_bytes(b"x")
    paths, walk = walked(root, "skip/")
    scanned = scan(root, SyncdFilter(root, ["skip/"]))
    by_path = scanned.files
    assert paths == sorted(by_path)
    rows = [row for _, rows in SortedWalk(root, SyncdFilter(root, ["skip/"])) for row in rows]
    assert rows == [(p, by_path[p].size, by_path[p].mtime_ns, by_path[p].inode) for p in paths]
    assert sorted(walk.skipped, key=str) == sorted(scanned.skipped, key=str)
    assert walk.dirs == scanned.dirs
    assert "Z/inside" in paths


def test_an_unreadable_directory_is_skipped_and_its_range_is_left_to_the_next_stretch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    write(root / "a.jpg")
    write(root / "locked" / "x.jpg")
    write(root / "m.jpg")
    real_open = os.open

    def fake_open(path: object, *args: object, **kwargs: object) -> int:
        if path == str(root / "locked"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", fake_open)
    walk = SortedWalk(root, SyncdFilter(root, []))
    stretches = list(walk)
    # ("locked/", [a.jpg]) then (None, [m.jpg]): a state row locked/x.jpg falls into
    # the second stretch, where the planner finds it protected by the skip.
    assert stretches == [("locked/", [stretches[0][1][0]]), (None, [stretches[1][1][0]])]
    assert [s.path for s in walk.skipped] == ["locked"]


def test_root_problems_raise_when_iterated(tmp_path: Path) -> None:
    walk = SortedWalk(tmp_path / "missing", SyncdFilter(tmp_path / "missing", []))
    with pytest.raises(RootUnavailable):
        list(walk)


def test_progress_once_per_directory(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for i in range(5):
        write(root / f"d{i}" / "f")
    beats: list[None] = []
    list(SortedWalk(root, SyncdFilter(root, []), lambda: beats.append(None)))
    assert len(beats) == 5
