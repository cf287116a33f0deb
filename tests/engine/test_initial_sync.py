"""Tests of syncd.engine.initial_sync: whole `initial_sync` passes over real folders under tmp_path against
the emulator over real HTTP, in-process."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import shutil
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import pytest
from structlog.testing import capture_logs

import syncd.local.source
from syncd.cli.dryrun import print_plan
from syncd.config.schema import Config, config_from_dict
from syncd.dam.client import DamClient
from syncd.dam.connect import make_dam, make_pacer
from syncd.dam.pacer import Pacer
from syncd.emulator import Emulator, serve
from syncd.engine.initial_sync import RunOptions, initial_sync
from syncd.engine.progress import NullProgress, Summary
from syncd.errors import AuthError
from syncd.local.fs import open_checked
from syncd.model import LocalFile
from syncd.state.store import State
from tests.conftest import KEY, TOKEN, dam_tree, local_tree, write

REMOTE = "/dst"
GET = "GET /{token}/v4/files"

TREE = {
    "a.txt": b"alpha",
    "b c #1.txt": b"beta",
    "sub/d.jpg": b"jpeg" * 100,
    "sub/deep/e & f.png": b"png" * 50,
    "x/y/z.bin": bytes(range(256)) * 4,
}


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def make_tree(root: Path, files: dict[str, bytes] = TREE) -> Path:
    for rel, data in files.items():
        write(root / rel, data)
    return root


def config_for(
    tmp_path: Path, emu: Emulator, *folders: dict[str, Any], workers: int = 4, lag: float = 0
) -> Config:
    # The emulator's listings do not lag unless a test says so (then it sets both).
    data = {
        "dam": {"token": TOKEN, "base_url": emu.url, "workers": workers, "listing_lag_s": lag},
        "state": {"path": str(tmp_path / "state" / "state.db")},
        "folders": list(folders),
    }
    return config_from_dict(data, tmp_path / "config.toml", env={})


def folder(root: Path, remote: str = REMOTE, **kw: Any) -> dict[str, Any]:
    return {"local": str(root), "remote": remote, **kw}


async def sync(config: Config, **options: bool) -> tuple[Summary, str]:
    out = io.StringIO()
    with anyio.fail_after(30):
        run = RunOptions(**options, show_plan=partial(print_plan, out))
        summary = await initial_sync(config, KEY, run, NullProgress())
    return summary, out.getvalue()


def requests_during(emu: Emulator) -> Callable[[], Counter[str]]:
    """The emulator's request counts from now on."""
    before = emu.stats.requests.copy()
    return lambda: emu.stats.requests - before


def known(config: Config, root: Path) -> dict[str, str]:
    """The state rows of one folder as path → uuid."""
    with State.open(config.state.path, readonly=True) as state:
        return {p: k.uuid for p, k in state.known(state.folder_id(str(root), REMOTE)).items()}


async def put_on_dam(emu: Emulator, folder_path: str, name: str, data: bytes) -> str:
    """Upload behind syncd's back, through the API; returns the uuid."""
    with anyio.fail_after(10):
        async with DamClient(emu.url, TOKEN, KEY, Pacer(2)) as dam:
            return (await dam.upload(folder_path, name, lambda: data, stream=False)).uuid


def age(emu: Emulator, uuid: str) -> None:
    """Make an asset look as if it was stored long before any run (older than updated_after)."""
    stored = emu.store.file(uuid)
    assert stored is not None
    stored.created_ms = stored.modified_ms = 0
    emu.store.mutations += 1  # drop the emulator's cached listings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "root")


# ---- first and repeated runs --------------------------------------------------------------


async def test_first_run_uploads_everything(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    summary, out = await sync(config)
    assert summary.ok
    assert summary.uploaded == len(TREE)
    assert summary.bytes == sum(map(len, TREE.values()))
    assert out == ""
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    uuids = {r.client_path[len(REMOTE) + 1 :]: r.uuid for r in emulator.files()}
    assert known(config, root) == uuids


async def test_a_second_run_without_changes_costs_a_constant_number_of_requests(
    emulator, tmp_path, root
):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    committed = emulator.stats.uploads_committed
    during = requests_during(emulator)
    summary, _ = await sync(config)
    # check_access, the folder count and the updated_after listing; nothing else
    made = during()
    assert set(made) == {GET}
    assert made[GET] == 3
    assert (summary.uploaded, summary.updated, summary.deleted, summary.hashed) == (0, 0, 0, 0)
    assert summary.unchanged == len(TREE)
    assert summary.ok
    assert emulator.stats.uploads_committed == committed


async def test_a_touched_file_is_hashed_not_uploaded(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    st = (root / "sub/d.jpg").stat()
    os.utime(root / "sub/d.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    during = requests_during(emulator)
    summary, _ = await sync(config)
    assert summary.hashed == 1
    assert (summary.uploaded, summary.updated, summary.adopted) == (0, 0, 0)
    assert set(during()) == {GET}
    again, _ = await sync(config)  # the new stat was recorded
    assert again.hashed == 0


async def test_local_changes_are_sent_on_the_next_run(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    old = known(config, root)
    write(root / "a.txt", b"alpha, longer now")
    write(root / "sub/d.jpg", b"JPEG" * 100)  # same size: found by hashing
    write(root / "new/n.txt", b"new")
    (root / "x/y/z.bin").unlink()
    summary, _ = await sync(config)
    assert (summary.uploaded, summary.updated, summary.deleted) == (1, 2, 1)
    assert summary.hashed == 1
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    now = known(config, root)
    assert set(now) == set(local_tree(root))
    assert now["b c #1.txt"] == old["b c #1.txt"]


async def test_an_asset_deleted_on_the_dam_is_uploaded_again(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    victim = next(r for r in emulator.files() if r.original_name == "e & f.png")
    emulator.store.delete_files([victim.uuid])
    with capture_logs() as logs:
        summary, _ = await sync(config)
    (full,) = [e for e in logs if e["event"] == "remote_full_listing"]
    assert full["reason"] == f"remote file count {len(TREE) - 1} differs from {len(TREE)}"
    assert summary.uploaded == 1
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    assert known(config, root)["sub/deep/e & f.png"] != victim.uuid


async def test_an_asset_changed_on_the_dam_is_restored(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    await put_on_dam(emulator, f"{REMOTE}/sub", "d.jpg", b"someone else's picture")
    assert dam_tree(emulator, REMOTE)["sub/d.jpg"] != sha1(TREE["sub/d.jpg"])
    summary, _ = await sync(config)
    assert summary.updated == 1
    assert summary.uploaded == 0
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_an_asset_changed_in_place_on_the_dam_is_restored(emulator, tmp_path, root):
    """Same uuid, new content (a project that keeps versions)."""
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    emulator.configure({"same_name": "version"})
    uuid = known(config, root)["a.txt"]
    assert await put_on_dam(emulator, REMOTE, "a.txt", b"ALPHA") == uuid
    summary, _ = await sync(config)
    assert summary.updated == 1
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_first_run_adopts_identical_files_already_on_the_dam(emulator, tmp_path, root):
    for rel, data in TREE.items():
        head, _, name = f"{REMOTE}/{rel}".rpartition("/")
        await put_on_dam(emulator, head, name, data)
    committed = emulator.stats.uploads_committed
    config = config_for(tmp_path, emulator, folder(root))
    _, plan = await sync(config, dry_run=True)
    assert "  match   a.txt  (5 B)" in plan.splitlines()
    assert f"0 uploads, 0 updates, 0 deletes, {len(TREE)} matched on the DAM" in plan
    during = requests_during(emulator)
    summary, _ = await sync(config)
    assert summary.adopted == len(TREE)
    assert summary.uploaded == 0
    assert summary.hashed == len(TREE)
    assert emulator.stats.uploads_committed == committed
    assert set(during()) == {GET}
    assert known(config, root) == {
        r.client_path[len(REMOTE) + 1 :]: r.uuid for r in emulator.files()
    }
    again, _ = await sync(config)
    assert (again.adopted, again.uploaded, again.hashed) == (0, 0, 0)


async def test_syncing_into_the_root_of_the_dam(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root, "/"))
    summary, _ = await sync(config)
    assert summary.uploaded == len(TREE)
    assert dam_tree(emulator, "/") == local_tree(root)
    (root / "a.txt").unlink()
    during = requests_during(emulator)
    again, _ = await sync(config)
    assert (again.uploaded, again.updated, again.deleted, again.hashed) == (0, 0, 1, 0)
    assert dam_tree(emulator, "/") == local_tree(root)
    assert set(during()) == {GET, "DELETE /{token}/v4/files"}


async def test_several_folders(emulator, tmp_path):
    one = make_tree(tmp_path / "one", {"a.txt": b"1", "s/b.txt": b"2"})
    two = make_tree(tmp_path / "two", {"a.txt": b"3"})
    config = config_for(tmp_path, emulator, folder(one, "/one"), folder(two, "/x/two"))
    summary, _ = await sync(config)
    assert summary.uploaded == 3
    assert dam_tree(emulator, "/one") == local_tree(one)
    assert dam_tree(emulator, "/x/two") == local_tree(two)


@pytest.mark.parametrize("naming", ["suffix", "uuid"])
async def test_projects_that_rename_uploads(emulator, tmp_path, root, naming):
    emulator.configure({"naming": naming})
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    assert all(r.name != r.original_name for r in emulator.files())
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    write(root / "a.txt", b"alpha two")
    during = requests_during(emulator)
    summary, _ = await sync(config)
    assert (summary.updated, summary.uploaded, summary.deleted) == (1, 0, 0)
    assert dam_tree(emulator, REMOTE) == local_tree(root)  # fails on a leftover duplicate
    assert during()["POST /{token}/v4/files"] == 1
    again, _ = await sync(config)
    assert (again.updated, again.uploaded, again.hashed) == (0, 0, 0)


async def test_files_in_place_of_synced_ones_that_cannot_be_synced_are_not_deleted(
    emulator, tmp_path, root
):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    (root / "a.txt").unlink()
    os.mkfifo(root / "a.txt")
    summary, _ = await sync(config)
    assert summary.skipped[0].path == "a.txt"
    assert "fifo" in summary.skipped[0].reason
    assert summary.deleted == 0
    assert summary.ok
    assert dam_tree(emulator, REMOTE) == {rel: sha1(d) for rel, d in TREE.items()}


async def test_a_touched_file_that_cannot_be_read_is_failed_not_deleted(
    emulator, tmp_path, root, monkeypatch
):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    os.utime(root / "a.txt", ns=(10**18, 10**18))  # same size: it must be hashed

    def guarded(root_: Path, rel: str, expected: LocalFile) -> BinaryIO:
        if rel == "a.txt":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), rel)
        return open_checked(root_, rel, expected)

    monkeypatch.setattr(syncd.local.source, "open_checked", guarded)
    summary, _ = await sync(config)
    assert [s.path for s in summary.failed] == ["a.txt"]
    assert "Permission denied" in summary.failed[0].reason
    assert summary.deleted == 0
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    monkeypatch.undo()
    summary, _ = await sync(config)
    assert summary.ok
    assert summary.hashed == 1


# ---- files syncd did not upload -----------------------------------------------------------


async def test_unknown_files_are_kept_by_default(emulator, tmp_path, root):
    foreign = await put_on_dam(emulator, f"{REMOTE}/sub", "foreign.txt", b"not ours")
    config = config_for(tmp_path, emulator, folder(root))
    summary, _ = await sync(config)
    assert summary.unknown_kept == 1
    assert summary.deleted == 0
    assert foreign in {r.uuid for r in emulator.files()}
    assert "set delete_unknown = true" in summary.render()


async def test_unknown_files_are_deleted_with_delete_unknown(emulator, tmp_path, root):
    await put_on_dam(emulator, f"{REMOTE}/sub", "foreign.txt", b"not ours")
    config = config_for(tmp_path, emulator, folder(root, delete_unknown=True))
    summary, _ = await sync(config)
    assert summary.deleted == 1
    assert summary.unknown_kept == 0
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    # One that appears later changes the count, so the next run lists and deletes it too.
    await put_on_dam(emulator, REMOTE, "later.txt", b"also not ours")
    summary, _ = await sync(config)
    assert summary.deleted == 1
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_duplicates_of_a_path_are_deleted_with_delete_unknown(emulator, tmp_path, root):
    # Rewritten, so the renamed asset's info.name (its path under suffix naming) is a.txt.
    emulator.configure({"naming": "suffix", "rename_info_name": "rewritten"})
    await put_on_dam(emulator, REMOTE, "a.txt", TREE["a.txt"])
    uuid = await put_on_dam(emulator, REMOTE, "stray.txt", b"an older a.txt")
    stray = emulator.store.file(uuid)
    assert stray is not None
    emulator.store.rename(stray, "a.txt")  # a second asset claiming the path a.txt
    assert [r.original_name for r in emulator.files()] == ["a.txt", "a.txt"]
    summary, _ = await sync(config_for(tmp_path, emulator, folder(root, delete_unknown=True)))
    assert summary.adopted == 1
    assert summary.deleted == 1
    assert uuid not in {r.uuid for r in emulator.files()}
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_turning_delete_unknown_on_deletes_the_files_kept_before(emulator, tmp_path, root):
    age(emulator, await put_on_dam(emulator, f"{REMOTE}/sub", "foreign.txt", b"not ours"))
    summary, _ = await sync(config_for(tmp_path, emulator, folder(root)))
    assert summary.unknown_kept == 1
    summary, _ = await sync(config_for(tmp_path, emulator, folder(root, delete_unknown=True)))
    assert summary.deleted == 1
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_deleting_a_local_duplicate_keeps_the_asset_of_the_other(emulator, tmp_path):
    emulator.configure({"duplicates": "refuse"})
    root = make_tree(tmp_path / "dups", {"a.txt": b"same bytes", "copy/b.txt": b"same bytes"})
    config = config_for(tmp_path, emulator, folder(root))
    summary, _ = await sync(config)
    assert summary.ok
    (asset,) = emulator.files()  # the project holds the content once
    (root / "copy/b.txt").unlink()
    await sync(config)
    assert [r.uuid for r in emulator.files()] == [asset.uuid]


# ---- delete safety ------------------------------------------------------------------------


async def test_mass_deletes_are_refused_then_forced(emulator, tmp_path):
    root = make_tree(tmp_path / "many", {f"f{i:02d}.txt": f"{i}".encode() for i in range(40)})
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    for i in range(30):
        (root / f"f{i:02d}.txt").unlink()
    summary, _ = await sync(config)
    assert summary.deleted == 0
    assert not summary.ok
    (refused,) = summary.refused
    assert "refusing to delete 30 of 40" in refused
    assert "--force-delete" in refused
    assert len(emulator.files()) == 40
    assert emulator.stats.requests["DELETE /{token}/v4/files"] == 0
    assert len(known(config, root)) == 40  # still known: a later run can still delete them
    summary, _ = await sync(config, force_delete=True)
    assert summary.deleted == 30
    assert summary.ok
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    assert len(known(config, root)) == 10


async def test_a_few_deletes_go_through(emulator, tmp_path):
    root = make_tree(tmp_path / "many", {f"f{i:02d}.txt": f"{i}".encode() for i in range(40)})
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    for i in range(4):
        (root / f"f{i:02d}.txt").unlink()
    summary, _ = await sync(config)
    assert summary.deleted == 4
    assert summary.ok
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_files_excluded_later_are_not_deleted(emulator, tmp_path, root):
    await sync(config_for(tmp_path, emulator, folder(root)))
    before = dam_tree(emulator, REMOTE)
    write(root / "sub/fresh.psd", b"new but excluded")
    config = config_for(tmp_path, emulator, folder(root, exclude=["*.png", "/x/", "fresh.*"]))
    summary, _ = await sync(config)
    assert summary.deleted == 0
    assert summary.uploaded == 0
    assert summary.ok
    assert dam_tree(emulator, REMOTE) == before


async def test_files_in_a_directory_excluded_later_are_not_deleted(emulator, tmp_path, root):
    await sync(config_for(tmp_path, emulator, folder(root)))
    before = dam_tree(emulator, REMOTE)
    config = config_for(tmp_path, emulator, folder(root, exclude=["sub/", "!*.jpg"]))
    summary, _ = await sync(config)
    assert summary.deleted == 0
    assert dam_tree(emulator, REMOTE) == before


async def test_an_emptied_root_deletes_nothing(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    for child in root.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()
    for options in ({}, {"force_delete": True}):
        summary, _ = await sync(config, **options)
        assert summary.deleted == 0
        (refused,) = summary.refused
        assert str(root) in refused
        assert "empty" in refused
        assert dam_tree(emulator, REMOTE) == {rel: sha1(d) for rel, d in TREE.items()}
    assert emulator.stats.requests["DELETE /{token}/v4/files"] == 0


async def test_a_missing_root_deletes_nothing(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    shutil.rmtree(root)
    summary, _ = await sync(config)
    assert summary.deleted == 0
    (refused,) = summary.refused
    assert "does not exist" in refused
    assert len(emulator.files()) == len(TREE)


# ---- dry runs and --verify ----------------------------------------------------------------


def changes_only(emu: Emulator) -> Counter[str]:
    return Counter({k: v for k, v in emu.stats.requests.items() if not k.startswith("GET ")})


async def test_a_first_dry_run_writes_nothing_and_prints_the_plan(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    summary, out = await sync(config, dry_run=True)
    assert not config.state.path.exists()
    assert not config.state.path.parent.exists()
    assert emulator.files() == []
    assert changes_only(emulator) == {}
    lines = out.splitlines()
    assert lines[0] == f"{root} → {REMOTE}"
    assert sorted(line.split("  ")[2] for line in lines[1:-1]) == sorted(TREE)
    assert all(line.startswith("  upload  ") for line in lines[1:-1])
    assert "  upload  a.txt  (5 B)" in lines
    assert lines[-1].startswith(f"  plan: {len(TREE)} uploads, 0 updates, 0 deletes")
    assert summary.uploaded == 0


async def test_a_dry_run_after_a_sync_prints_updates_and_deletes(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    uuids = known(config, root)
    snapshot = emulator.snapshot()
    db = config.state.path.read_bytes()
    write(root / "a.txt", b"changed content")
    write(root / "new.txt", b"new")
    (root / "x/y/z.bin").unlink()
    during = requests_during(emulator)
    summary, out = await sync(config, dry_run=True)
    assert f"  update  a.txt  ({len(b'changed content')} B)" in out.splitlines()
    assert "  upload  new.txt  (3 B)" in out.splitlines()
    assert f"  delete  x/y/z.bin  (uuid {uuids['x/y/z.bin']})" in out.splitlines()
    assert "plan: 1 uploads, 1 updates, 1 deletes" in out
    assert set(during()) == {GET}
    assert emulator.snapshot() == snapshot
    assert config.state.path.read_bytes() == db
    assert known(config, root) == uuids
    assert (summary.uploaded, summary.updated, summary.deleted) == (0, 0, 0)


async def test_a_dry_run_prints_refused_deletes(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root, max_delete_count=0, max_delete_percent=0))
    await sync(config)
    (root / "a.txt").unlink()
    summary, out = await sync(config, dry_run=True)
    assert "  REFUSED refusing to delete 1 of 5" in out
    assert "  delete " not in out
    assert summary.refused


async def test_verify_lists_the_dam_in_full(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    # A change that count + updated_after cannot see: an asset swapped for an old-looking
    # foreign one, so the count stays the same and nothing is newer than the last run.
    victim = next(r for r in emulator.files() if r.original_name == "a.txt")
    emulator.store.delete_files([victim.uuid])
    age(emulator, await put_on_dam(emulator, REMOTE, "foreign.txt", b"?"))

    with capture_logs() as logs:
        summary, _ = await sync(config)
    assert summary.uploaded == 0  # fooled, as designed: this is what --verify is for
    assert "remote_unchanged" in [e["event"] for e in logs]

    during = requests_during(emulator)
    with capture_logs() as logs:
        summary, _ = await sync(config, verify=True)
    (full,) = [e for e in logs if e["event"] == "remote_full_listing"]
    assert full["reason"] == "--verify"
    assert summary.uploaded == 1
    assert summary.unknown_kept == 1
    assert during()[GET] == 3  # check_access, the listing, the closing count
    assert dam_tree(emulator, REMOTE) == {**local_tree(root), "foreign.txt": sha1(b"?")}


# ---- failures -----------------------------------------------------------------------------


async def test_a_revoked_key_stops_the_run(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    emulator.revoke_key()
    with pytest.raises(AuthError):
        await sync(config)
    assert sum(emulator.stats.requests.values()) == 1
    assert emulator.files() == []


async def test_a_key_revoked_during_the_run_stops_it_with_auth_error(
    emulator, tmp_path, root, monkeypatch
):
    upload = DamClient.upload

    async def revoke_then_upload(self: DamClient, *args: Any, **kw: Any) -> Any:
        emulator.revoke_key()  # revoked by an admin while the uploads run
        return await upload(self, *args, **kw)

    monkeypatch.setattr(DamClient, "upload", revoke_then_upload)
    with pytest.raises(AuthError):
        await sync(config_for(tmp_path, emulator, folder(root)))


async def test_failed_files_are_retried_by_a_full_listing_next_time(
    emulator, tmp_path, root, monkeypatch
):
    def guarded(root_: Path, rel: str, expected: LocalFile) -> BinaryIO:
        if rel == "a.txt":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), rel)
        return open_checked(root_, rel, expected)

    monkeypatch.setattr(syncd.local.source, "open_checked", guarded)
    config = config_for(tmp_path, emulator, folder(root))
    summary, _ = await sync(config)
    assert [s.path for s in summary.failed] == ["a.txt"]
    assert not summary.ok
    assert "a.txt" not in dam_tree(emulator, REMOTE)
    monkeypatch.undo()
    with capture_logs() as logs:
        summary, _ = await sync(config)
    assert summary.ok
    assert summary.uploaded == 1
    assert "remote_full_listing" in [e["event"] for e in logs]
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    with State.open(config.state.path) as state:
        assert state.parked(state.folder_id(str(root), REMOTE)) == []


# ---- review findings: assets syncd must never delete ------------------------------------


async def test_an_identical_asset_elsewhere_is_adopted_but_never_deleted(emulator, tmp_path):
    emulator.configure({"duplicates": "refuse"})
    other_uuid = await put_on_dam(emulator, "/marketing", "logo.png", b"LOGO")
    root = make_tree(tmp_path / "root", {"copy.png": b"LOGO", "keep.txt": b"k"})
    config = config_for(tmp_path, emulator, folder(root))
    summary, _ = await sync(config)
    assert summary.ok
    assert known(config, root)["copy.png"] == other_uuid
    (root / "copy.png").unlink()
    summary, _ = await sync(config)
    assert summary.deleted == 0
    assert "/marketing/logo.png" in {r.client_path for r in emulator.files()}
    assert "copy.png" not in known(config, root)


async def two_identical_files(emulator, tmp_path):
    """one.txt uploaded, then an identical two.txt that the DAM maps to one.txt's asset."""
    emulator.configure({"duplicates": "refuse"})
    root = make_tree(tmp_path / "root", {"one.txt": b"same"})
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    write(root / "two.txt", b"same")
    await sync(config)
    rows = known(config, root)
    assert rows["one.txt"] == rows["two.txt"]
    return root, config


async def test_changing_the_adopting_file_keeps_the_shared_asset(emulator, tmp_path):
    root, config = await two_identical_files(emulator, tmp_path)
    write(root / "two.txt", b"two's new content")
    summary, _ = await sync(config)
    assert summary.ok
    assert known(config, root)["one.txt"] in {r.uuid for r in emulator.files()}
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_changing_the_owning_file_resyncs_the_other_when_the_dam_drops_it(emulator, tmp_path):
    root, config = await two_identical_files(emulator, tmp_path)
    write(root / "one.txt", b"one's new content")
    summary, _ = await sync(config)  # the DAM's override removes the shared asset
    assert summary.ok
    assert "two.txt" not in known(config, root)
    summary, _ = await sync(config)  # lists the DAM in full and uploads two.txt again
    assert summary.uploaded == 1
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_first_run_never_replaces_other_content_syncd_did_not_upload(emulator, tmp_path):
    emulator.configure({"naming": "suffix"})
    theirs = await put_on_dam(emulator, REMOTE, "a.txt", b"an edited copy someone keeps")
    age(emulator, theirs)
    root = make_tree(tmp_path / "root", {"a.txt": b"alpha"})
    config = config_for(tmp_path, emulator, folder(root))
    summary, _ = await sync(config)
    assert summary.ok
    assert summary.unknown_kept == 1
    assert theirs in {r.uuid for r in emulator.files()}
    assert sorted(r.sha1 for r in emulator.files()) == sorted(
        [sha1(b"alpha"), sha1(b"an edited copy someone keeps")]
    )


async def test_refused_deletes_are_planned_again_with_force_delete(emulator, tmp_path):
    for i in range(30):
        age(emulator, await put_on_dam(emulator, REMOTE, f"old-{i}.txt", f"old {i}".encode()))
    root = make_tree(tmp_path / "root", {"a.txt": b"alpha"})
    config = config_for(tmp_path, emulator, folder(root, delete_unknown=True))
    summary, _ = await sync(config)
    assert summary.refused
    assert summary.deleted == 0
    assert len(emulator.files()) == 31
    summary, _ = await sync(config, force_delete=True)
    assert summary.ok
    assert summary.deleted == 30
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_parked_files_that_are_gone_stop_forcing_full_listings(emulator, tmp_path):
    root = make_tree(tmp_path / "root", {"a.txt": b"alpha", "big.bin": b"x" * 5000})
    config = config_for(tmp_path, emulator, folder(root))
    emulator.configure({"max_upload_bytes": 1000})
    summary, _ = await sync(config)
    assert [f.path for f in summary.failed] == ["big.bin"]
    (root / "big.bin").unlink()
    summary, _ = await sync(config)  # full listing: files failed last time
    assert summary.ok
    during = requests_during(emulator)
    summary, _ = await sync(config)
    assert summary.ok
    assert during()[GET] == 3  # key check, count, updated_after: no full listing


async def test_an_old_asset_that_cannot_be_deleted_is_deleted_by_the_next_run(
    emulator, tmp_path, monkeypatch
):
    emulator.configure({"naming": "suffix"})
    root = make_tree(tmp_path / "root", {"a.txt": b"alpha"})
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    old = known(config, root)["a.txt"]
    write(root / "a.txt", b"alpha, edited")
    real_delete = DamClient.delete

    async def refuse(self: DamClient, uuid: str) -> None:
        from syncd.errors import PermanentDamError

        raise PermanentDamError("delete refused for the test", status=400)

    monkeypatch.setattr(DamClient, "delete", refuse)
    summary, _ = await sync(config)
    assert summary.ok  # the new content is there; the old asset waits
    assert old in {r.uuid for r in emulator.files()}
    assert known(config, root)["a.txt"] != old
    monkeypatch.setattr(DamClient, "delete", real_delete)
    summary, _ = await sync(config)
    assert summary.ok
    assert old not in {r.uuid for r in emulator.files()}
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_renames_and_moves_keep_their_assets(emulator, tmp_path, root):
    config = config_for(tmp_path, emulator, folder(root))
    await sync(config)
    before = known(config, root)
    os.rename(root / "a.txt", root / "A.txt")  # case-only
    os.rename(root / "sub", root / "moved")  # a directory, with a subdirectory
    os.rename(root / "x" / "y" / "z.bin", root / "z-renamed.bin")  # across directories
    summary, _ = await sync(config)
    assert summary.ok
    assert (summary.uploaded, summary.deleted, summary.moved) == (0, 0, 4)
    after = known(config, root)
    assert after["A.txt"] == before["a.txt"]
    assert after["moved/d.jpg"] == before["sub/d.jpg"]
    assert after["moved/deep/e & f.png"] == before["sub/deep/e & f.png"]
    assert after["z-renamed.bin"] == before["x/y/z.bin"]
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    assert emulator.stats.uploads_committed == len(TREE)


async def test_the_listing_lag_travels_with_the_dam_client(tmp_path, emulator, root):
    """The lag is the DAM's trait: each client made from a config carries that config's
    lag, so a reload that changes it (and so makes a new client) takes effect."""
    for lag in (0.0, 7.5):
        data = {
            "dam": {"token": TOKEN, "base_url": emulator.url, "listing_lag_s": lag},
            "state": {"path": str(tmp_path / "state.db")},
            "folders": [folder(root)],
        }
        config = config_from_dict(data, tmp_path / "config.toml", env={})
        assert make_dam(config, "key", make_pacer(config)).listing_lag_s == lag


@pytest.mark.e2e
async def test_a_full_listing_right_after_a_run_waits_until_it_shows_that_runs_writes(
    tmp_path, root
):
    async with serve(token=TOKEN, key=KEY, listing_lag_s=1.0) as emu:
        config = config_for(tmp_path, emu, folder(root), lag=1.0)
        first, _ = await sync(config)
        assert first.uploaded == len(TREE)
        # At once, a run that lists in full: the listing does not show the uploads yet.
        with capture_logs() as logs:
            again, _ = await sync(config, verify=True)
        assert [e["event"] for e in logs].count("listing_lag_wait") == 1
        assert (again.uploaded, again.updated, again.deleted) == (0, 0, 0)
        assert len(emu.files()) == len(TREE)
