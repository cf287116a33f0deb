"""Tests of the streamed paths of a reconcile (syncd.engine.survey and the first run into
an empty DAM folder in syncd.engine.folder): whole `initial_sync` passes over real folders
under tmp_path against the emulator over real HTTP, in-process."""

from __future__ import annotations

import os
from collections.abc import MutableMapping
from typing import Any

from structlog.testing import capture_logs

import syncd.engine.folder
from tests.conftest import dam_tree, local_tree, write
from tests.engine.test_initial_sync import (
    REMOTE,
    TREE,
    config_for,
    folder,
    known,
    make_tree,
    put_on_dam,
    sync,
)

# Paths whose order as whole strings differs from a directory-by-directory walk.
TRICKY = {
    "a/x.jpg": b"1",
    "a-b/x.jpg": b"2",
    "a.b": b"3",
    "a b/c/d.jpg": b"4",
    "a0": b"5",
    "é/📷.jpg": b"6",
}


def events(logs: list[MutableMapping[str, Any]]) -> set[object]:
    return {e["event"] for e in logs}


async def test_a_first_run_into_an_empty_folder_goes_a_stretch_at_a_time(
    emulator, tmp_path, monkeypatch
):
    monkeypatch.setattr(syncd.engine.folder, "_FRESH_STRETCH", 2)
    root = make_tree(tmp_path / "root", {**TREE, **TRICKY})
    os.symlink("/etc/hostname", root / "outside")
    config = config_for(tmp_path, emulator, folder(root))
    with capture_logs() as logs:
        summary, _ = await sync(config)
    assert "remote_empty" in events(logs)
    assert "remote_full_listing" not in events(logs)
    assert summary.uploaded == len(TREE) + len(TRICKY)
    assert [s.path for s in summary.skipped] == ["outside"]
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    assert len(known(config, root)) == summary.uploaded
    # The run bookmarked the DAM side: the next one trusts the state.
    with capture_logs() as logs:
        again, _ = await sync(config)
    assert "remote_unchanged" in events(logs)
    assert (again.uploaded, again.unchanged) == (0, len(TREE) + len(TRICKY))


async def test_a_first_run_into_a_folder_with_assets_lists_it_in_full(emulator, tmp_path):
    root = make_tree(tmp_path / "root")
    await put_on_dam(emulator, f"{REMOTE}/sub", "d.jpg", TREE["sub/d.jpg"])
    config = config_for(tmp_path, emulator, folder(root))
    with capture_logs() as logs:
        summary, _ = await sync(config)
    assert "remote_full_listing" in events(logs)
    assert "remote_empty" not in events(logs)
    assert (summary.uploaded, summary.adopted) == (len(TREE) - 1, 1)


async def test_a_rerun_finds_changes_wherever_they_sort(emulator, tmp_path):
    root = make_tree(tmp_path / "root", {**TREE, **TRICKY})
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    write(root / "a" / "x.jpg", b"changed")
    (root / "a-b" / "x.jpg").unlink()
    (root / "a-b").rmdir()
    write(root / "a-a" / "new.jpg", b"new")
    (root / "é" / "📷.jpg").rename(root / "é" / "moved.jpg")
    with capture_logs() as logs:
        summary, _ = await sync(config)
    assert "remote_unchanged" in events(logs)
    assert summary.ok
    assert (summary.uploaded, summary.updated, summary.deleted, summary.moved) == (1, 1, 1, 1)
    assert summary.unchanged == len(TREE) + len(TRICKY) - 3
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_a_directory_that_cannot_be_read_keeps_its_assets(emulator, tmp_path, monkeypatch):
    root = make_tree(tmp_path / "root", {**TREE, **TRICKY})
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    before = dam_tree(emulator, REMOTE)
    real_open = os.open

    def fake_open(path, *args, **kwargs):
        if path == str(root / "a b"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
    summary, _ = await sync(config)
    assert [s.path for s in summary.failed] == ["a b"]
    assert summary.deleted == 0
    assert dam_tree(emulator, REMOTE) == before


async def test_an_asset_added_behind_syncds_back_means_a_full_listing(emulator, tmp_path):
    # The count check answers first and ends the compared walk; the plain walk and the
    # full listing follow, and the stranger is kept (delete_unknown is off).
    root = make_tree(tmp_path / "root")
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    await put_on_dam(emulator, REMOTE, "stranger.jpg", b"x")
    with capture_logs() as logs:
        summary, _ = await sync(config)
    (full,) = [e for e in logs if e["event"] == "remote_full_listing"]
    assert full["reason"] == f"remote file count {len(TREE) + 1} differs from {len(TREE)}"
    assert summary.ok
    assert (summary.uploaded, summary.unknown_kept) == (0, 1)
    remote = dam_tree(emulator, REMOTE)
    assert remote.pop("stranger.jpg") is not None
    assert remote == local_tree(root)
