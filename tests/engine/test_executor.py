"""Tests of syncd.engine.executor: the Executor carrying out planned actions against the emulator over
real HTTP, recording outcomes in a real state database under tmp_path."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import anyio
import pytest

import syncd.local.source
from syncd.dam.client import DamClient
from syncd.dam.limits import Backoff
from syncd.dam.pacer import Pacer
from syncd.emulator import Emulator
from syncd.engine.executor import Executor, FolderTarget
from syncd.engine.progress import NullProgress, Summary
from syncd.errors import AuthError, NameConflict
from syncd.local.fs import open_checked
from syncd.local.source import CHUNK
from syncd.model import Action, LocalFile, Op, Skip
from syncd.state.store import State
from tests.conftest import KEY, TOKEN, dam_tree, local_tree, write

FAST = Backoff(base_s=0.01, cap_s=0.05, max_attempts=6)
REMOTE = "/dst"
STREAM_AT = 2 * CHUNK  # larger files use the streaming PUT upload


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


class CountingProgress(NullProgress):
    def __init__(self) -> None:
        self.added = [0, 0]
        self.done = [0, 0]

    def add(self, files: int, nbytes: int) -> None:
        self.added[0] += files
        self.added[1] += nbytes

    def advance(self, files: int, nbytes: int) -> None:
        self.done[0] += files
        self.done[1] += nbytes


@dataclass
class Rig:
    emu: Emulator
    dam: DamClient
    state: State
    root: Path
    target: FolderTarget
    summary: Summary = field(default_factory=Summary)
    progress: CountingProgress = field(default_factory=CountingProgress)

    def local(self, rel: str, *, hashed: bool = False) -> LocalFile:
        path = self.root / rel
        st = path.stat()
        digest = sha1(path.read_bytes()) if hashed else None
        return LocalFile(rel, st.st_size, st.st_mtime_ns, st.st_ino, digest)

    def upload(self, rel: str) -> Action:
        return Action(Op.UPLOAD, rel, self.local(rel))

    def replace(self, rel: str, uuid: str) -> Action:
        return Action(Op.REPLACE, rel, self.local(rel), uuid)

    async def run(self, actions: Sequence[Action], *, workers: int = 4) -> Summary:
        executor = Executor(self.dam, self.state, self.summary, self.progress, workers=workers)
        with anyio.fail_after(20):
            await executor.run(self.target, actions)
        return self.summary

    def known(self) -> dict[str, tuple[str, str]]:
        """State rows as path → (uuid, sha1)."""
        return {p: (k.uuid, k.sha1) for p, k in self.state.known(self.target.folder_id).items()}

    def requests(self, key: str) -> int:
        return self.emu.stats.requests[key]


@pytest.fixture
async def rig(emulator: Emulator, tmp_path: Path) -> AsyncIterator[Rig]:
    root = tmp_path / "root"
    root.mkdir()
    state = State.open(tmp_path / "state.db")
    try:
        async with DamClient(emulator.url, TOKEN, KEY, Pacer(4, backoff=FAST), workers=4) as dam:
            target = FolderTarget(root, REMOTE, state.ensure_folder(str(root), REMOTE), STREAM_AT)
            yield Rig(emulator, dam, state, root, target)
    finally:
        state.close()


def flip_off(emu: Emulator, option: str) -> Pacer:
    """A pacer whose first retry sleep turns `option` off: exactly one attempt is hit."""

    async def sleep(seconds: float) -> None:
        emu.configure({option: 0.0})
        await anyio.sleep(seconds)

    return Pacer(4, backoff=FAST, sleep=sleep)


SIZES = {"small": 100, "chunked": CHUNK + 100, "streamed": STREAM_AT + 100}


# ---- uploads ------------------------------------------------------------------------------


async def test_uploads_are_recorded_with_uuid_and_sha1(rig):
    files = {
        "a.txt": b"alpha",
        "sub/b.txt": b"beta" * 10,
        "sub/deep/c d #1.txt": b"gamma",
        "chunked.bin": os.urandom(SIZES["chunked"]),
        "x/streamed.bin": os.urandom(SIZES["streamed"]),
    }
    for rel, data in files.items():
        write(rig.root / rel, data)
    summary = await rig.run([rig.upload(rel) for rel in files])
    assert summary.failed == []
    assert summary.uploaded == len(files)
    assert summary.bytes == sum(map(len, files.values()))
    by_path = {r.client_path: r for r in rig.emu.files()}
    assert dam_tree(rig.emu, REMOTE) == local_tree(rig.root)
    assert rig.known() == {
        rel: (by_path[f"{REMOTE}/{rel}"].uuid, sha1(data)) for rel, data in files.items()
    }
    rows = rig.state.known(rig.target.folder_id)
    assert all(k.remote_sha1 == k.sha1 for k in rows.values())
    assert rows["a.txt"].size == 5
    assert rig.requests("PUT /{token}/v4/files") == 1  # only the file above the threshold
    assert rig.requests("POST /{token}/v4/files") == len(files) - 1
    total = sum(map(len, files.values()))
    assert rig.progress.added == [len(files), total]
    assert rig.progress.done == [len(files), total]


async def test_an_identical_file_already_there_is_adopted(rig):
    write(rig.root / "a.txt", b"same")
    first = await rig.run([rig.upload("a.txt")])
    assert first.uploaded == 1
    rig.state.forget(rig.target.folder_id, "a.txt")
    rig.state.flush()
    await rig.run([rig.upload("a.txt")])
    assert rig.summary.adopted == 1
    assert rig.summary.bytes == 4  # only the first upload sent bytes
    assert len(rig.emu.files()) == 1
    assert rig.known() == {"a.txt": (rig.emu.files()[0].uuid, sha1(b"same"))}


# ---- replacing ----------------------------------------------------------------------------


async def upload_then_change(rig: Rig, rel: str, old: bytes, new: bytes) -> str:
    write(rig.root / rel, old)
    await rig.run([rig.upload(rel)])
    (rec,) = rig.emu.files()
    write(rig.root / rel, new)
    return rec.uuid


@pytest.mark.parametrize("size", ["small", "streamed"])
async def test_replace_with_override(rig, size):
    new = os.urandom(SIZES[size])
    old_uuid = await upload_then_change(rig, "d/a.bin", b"old", new)
    summary = await rig.run([rig.replace("d/a.bin", old_uuid)])
    assert (summary.uploaded, summary.updated, summary.failed) == (1, 1, [])
    (rec,) = rig.emu.files()
    assert rec.uuid != old_uuid
    assert rec.sha1 == sha1(new)
    assert rig.known() == {"d/a.bin": (rec.uuid, sha1(new))}


async def test_replace_with_versions_keeps_the_uuid(rig):
    rig.emu.configure({"same_name": "version"})
    old_uuid = await upload_then_change(rig, "a.txt", b"old", b"new content")
    await rig.run([rig.replace("a.txt", old_uuid)])
    (rec,) = rig.emu.files()
    assert (rec.uuid, rec.sha1, rec.version) == (old_uuid, sha1(b"new content"), 2)
    assert rig.known() == {"a.txt": (old_uuid, sha1(b"new content"))}
    assert rig.requests("DELETE /{token}/v4/files/{uuid}") == 0


@pytest.mark.parametrize("name", ["a.txt", "README", "photo.final.jpg"])
async def test_replace_when_the_project_refuses_same_names(rig, name):
    rig.emu.configure({"same_name": "refuse"})
    old_uuid = await upload_then_change(rig, f"d/{name}", b"old", b"brand new")
    summary = await rig.run([rig.replace(f"d/{name}", old_uuid)])
    assert summary.failed == []
    assert summary.updated == 1
    (rec,) = rig.emu.files()  # uploaded aside, old deleted, new renamed into place
    assert (rec.name, rec.folder) == (name, f"{REMOTE}/d")
    assert rec.sha1 == sha1(b"brand new")
    assert rec.uuid != old_uuid
    assert rig.known() == {f"d/{name}": (rec.uuid, sha1(b"brand new"))}
    assert dam_tree(rig.emu, REMOTE) == local_tree(rig.root)


async def test_replace_falls_back_to_delete_then_upload_when_no_name_is_accepted(rig, monkeypatch):
    rig.emu.configure({"same_name": "refuse"})
    old_uuid = await upload_then_change(rig, "a.txt", b"old", b"brand new")
    upload = rig.dam.upload

    async def no_temporary_names(folder, name, *args, **kwargs):
        if ".syncd-" in name:
            raise NameConflict("names are locked", status=409)
        return await upload(folder, name, *args, **kwargs)

    monkeypatch.setattr(rig.dam, "upload", no_temporary_names)
    summary = await rig.run([rig.replace("a.txt", old_uuid)])
    assert summary.failed == []
    (rec,) = rig.emu.files()
    assert (rec.name, rec.sha1) == ("a.txt", sha1(b"brand new"))
    assert rec.uuid != old_uuid


async def test_replace_with_suffix_naming_deletes_the_old_asset_after_the_new_one(rig, monkeypatch):
    rig.emu.configure({"naming": "suffix"})
    old_uuid = await upload_then_change(rig, "a.jpg", b"old", b"new content")
    seen_at_delete: list[tuple[str, set[str]]] = []
    delete = rig.dam.delete

    async def spy(uuid: str) -> None:
        seen_at_delete.append((uuid, {r.sha1 for r in rig.emu.files()}))
        await delete(uuid)

    monkeypatch.setattr(rig.dam, "delete", spy)
    await rig.run([rig.replace("a.jpg", old_uuid)])
    # Random names never collide, so the old asset is still there when the new one lands:
    # syncd deletes it, and only after the new content is committed.
    assert seen_at_delete == [(old_uuid, {sha1(b"old"), sha1(b"new content")})]
    (rec,) = rig.emu.files()
    assert rec.original_name == "a.jpg"
    assert rec.name != "a.jpg"
    assert rec.sha1 == sha1(b"new content")
    assert rig.known() == {"a.jpg": (rec.uuid, sha1(b"new content"))}


# ---- files that move under our feet -------------------------------------------------------


@pytest.mark.parametrize("size", list(SIZES))
async def test_a_file_that_vanished_before_its_upload_is_not_a_failure(rig, size):
    write(rig.root / "gone.bin", os.urandom(SIZES[size]))
    action = rig.upload("gone.bin")
    (rig.root / "gone.bin").unlink()
    summary = await rig.run([action])
    assert summary.failed == []
    assert summary.uploaded == 0
    assert rig.emu.files() == []
    assert rig.known() == {}
    assert rig.state.parked(rig.target.folder_id) == []
    assert rig.progress.done[0] == 1


@pytest.mark.parametrize("size", ["chunked", "streamed"])
async def test_a_hashed_file_that_vanished_before_its_update_is_not_a_failure(rig, size):
    n = SIZES[size]
    old_uuid = await upload_then_change(rig, "gone.bin", os.urandom(n), os.urandom(n))
    # Same size, new mtime: the planner hashes it and plans a REPLACE carrying the sha1.
    action = Action(Op.REPLACE, "gone.bin", rig.local("gone.bin", hashed=True), old_uuid)
    (rig.root / "gone.bin").unlink()
    summary = await rig.run([action])
    assert summary.failed == []
    assert [r.uuid for r in rig.emu.files()] == [old_uuid]  # the next run deletes it


@pytest.mark.parametrize("size", list(SIZES))
async def test_a_file_changed_before_its_upload_is_redone_with_a_fresh_stat(rig, size):
    write(rig.root / "c.bin", os.urandom(SIZES[size]))
    action = rig.upload("c.bin")
    final = os.urandom(SIZES[size] + 777)
    write(rig.root / "c.bin", final)
    summary = await rig.run([action])
    assert summary.failed == []
    assert summary.uploaded == 1
    assert summary.bytes == len(final)
    (rec,) = rig.emu.files()
    assert (rec.sha1, rec.size) == (sha1(final), len(final))
    row = rig.state.known(rig.target.folder_id)["c.bin"]
    assert (row.size, row.sha1, row.uuid) == (len(final), sha1(final), rec.uuid)


async def test_a_hashed_file_changed_before_its_update_is_redone(rig):
    n = SIZES["chunked"]
    old_uuid = await upload_then_change(rig, "c.bin", os.urandom(n), os.urandom(n))
    action = Action(Op.REPLACE, "c.bin", rig.local("c.bin", hashed=True), old_uuid)
    final = os.urandom(n + 777)
    write(rig.root / "c.bin", final)
    summary = await rig.run([action])
    assert summary.failed == []
    assert [r.sha1 for r in rig.emu.files()] == [sha1(final)]


@pytest.mark.parametrize("size", ["small", "streamed"])
async def test_an_unreadable_file_is_failed_and_parked(rig, monkeypatch, size):
    write(rig.root / "ok.txt", b"fine")
    write(rig.root / "secret.bin", os.urandom(SIZES[size]))

    def guarded(root: Path, rel: str, expected: LocalFile) -> BinaryIO:
        if rel == "secret.bin":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), rel)
        return open_checked(root, rel, expected)

    monkeypatch.setattr(syncd.local.source, "open_checked", guarded)
    summary = await rig.run([rig.upload("ok.txt"), rig.upload("secret.bin")])
    assert summary.failed == [Skip("secret.bin", "cannot read the file: Permission denied")]
    assert summary.uploaded == 1
    assert [r.original_name for r in rig.emu.files()] == ["ok.txt"]
    assert set(rig.known()) == {"ok.txt"}
    (parked,) = rig.state.parked(rig.target.folder_id)
    assert (parked.path, parked.op, parked.attempts) == ("secret.bin", "upload", 1)
    assert "Permission denied" in parked.error


async def test_a_dam_that_keeps_failing_parks_the_file(rig):
    write(rig.root / "a.txt", b"a")
    rig.emu.configure({"error_rate": 1.0})
    summary = await rig.run([rig.upload("a.txt")])
    assert [s.path for s in summary.failed] == ["a.txt"]
    assert "HTTP 5" in summary.failed[0].reason
    assert [p.path for p in rig.state.parked(rig.target.folder_id)] == ["a.txt"]
    assert rig.known() == {}


# ---- the key ------------------------------------------------------------------------------


async def test_a_revoked_key_stops_the_uploads(rig):
    """The run stops without recording per-file failures and without retries."""
    for i in range(3):
        write(rig.root / f"{i}.txt", f"{i}")
    rig.emu.revoke_key()
    with pytest.raises(AuthError):
        await rig.run([rig.upload(f"{i}.txt") for i in range(3)], workers=2)
    assert rig.summary.failed == []  # not recorded as per-file failures
    assert rig.emu.files() == []
    assert rig.emu.stats.requests["POST /{token}/v4/files"] <= 2  # no retries


async def test_a_revoked_key_stops_the_deletes_with_auth_error(rig):
    write(rig.root / "a.txt", b"a")
    await rig.run([rig.upload("a.txt")])
    uuid = rig.emu.files()[0].uuid
    rig.emu.revoke_key()
    with pytest.raises(AuthError):
        await rig.run([Action(Op.DELETE, "a.txt", uuid=uuid)])
    assert len(rig.emu.files()) == 1
    assert set(rig.known()) == {"a.txt"}


# ---- deletes ------------------------------------------------------------------------------


async def test_deletes_go_in_bulk_and_are_forgotten(rig):
    for i in range(4):
        write(rig.root / f"{i}.txt", f"{i}")
    await rig.run([rig.upload(f"{i}.txt") for i in range(4)])
    uuids = rig.known()
    deletes = [Action(Op.DELETE, p, uuid=uuids[p][0]) for p in ("0.txt", "1.txt", "2.txt")]
    before = rig.requests("DELETE /{token}/v4/files")
    summary = await rig.run(deletes)
    assert rig.requests("DELETE /{token}/v4/files") - before == 1
    assert rig.requests("DELETE /{token}/v4/files/{uuid}") == 0
    assert summary.deleted == 3
    assert [r.original_name for r in rig.emu.files()] == ["3.txt"]
    assert set(rig.known()) == {"3.txt"}


async def test_deletes_that_keep_failing_are_parked_not_forgotten(rig):
    write(rig.root / "a.txt", b"a")
    write(rig.root / "b.txt", b"b")
    await rig.run([rig.upload("a.txt"), rig.upload("b.txt")])
    uuids = rig.known()
    rig.emu.configure({"error_rate": 1.0})
    summary = await rig.run([Action(Op.DELETE, p, uuid=uuids[p][0]) for p in ("a.txt", "b.txt")])
    assert sorted(s.path for s in summary.failed) == ["a.txt", "b.txt"]
    assert summary.deleted == 0
    assert set(rig.known()) == {"a.txt", "b.txt"}
    assert [p.op for p in rig.state.parked(rig.target.folder_id)] == ["delete", "delete"]
    assert len(rig.emu.files()) == 2


async def test_adopt_refresh_and_forget_touch_only_the_state(rig):
    write(rig.root / "a.txt", b"a")
    write(rig.root / "b.txt", b"b")
    await rig.run([rig.upload("a.txt"), rig.upload("b.txt")])
    known = rig.known()
    requests = sum(rig.emu.stats.requests.values())
    os.utime(rig.root / "a.txt", ns=(10**18, 10**18))
    refreshed = replace(rig.local("a.txt"), sha1=sha1(b"a"))
    await rig.run(
        [
            Action(Op.REFRESH, "a.txt", refreshed, known["a.txt"][0], sha1(b"a")),
            Action(Op.FORGET, "b.txt", uuid=known["b.txt"][0]),
        ]
    )
    assert sum(rig.emu.stats.requests.values()) == requests
    rows = rig.state.known(rig.target.folder_id)
    assert set(rows) == {"a.txt"}
    assert rows["a.txt"].mtime_ns == 10**18
    assert rig.summary.adopted == 0


# ---- connections dropped after the DAM committed -----------------------------------------


@pytest.mark.parametrize("size", ["small", "streamed"])
async def test_an_upload_reset_after_commit_ends_as_one_asset(rig, size):
    rig.dam.pacer = flip_off(rig.emu, "reset_after_commit_rate")
    data = os.urandom(SIZES[size])
    write(rig.root / "r/x.bin", data)
    rig.emu.configure({"reset_after_commit_rate": 1.0})
    summary = await rig.run([rig.upload("r/x.bin")])
    assert rig.emu.stats.faults["reset_after_commit"] == 1
    assert summary.failed == []
    assert summary.uploaded == 1
    assert dam_tree(rig.emu, REMOTE) == {"r/x.bin": sha1(data)}  # fails on duplicates
    assert rig.emu.stats.uploads_committed == 1
    assert rig.known() == {"r/x.bin": (rig.emu.files()[0].uuid, sha1(data))}


@pytest.mark.parametrize("same_name", ["override", "version", "refuse"])
async def test_a_replace_reset_after_commit_ends_as_one_asset(rig, same_name):
    rig.emu.configure({"same_name": same_name})
    old_uuid = await upload_then_change(rig, "x.txt", b"old", b"new!")
    rig.dam.pacer = flip_off(rig.emu, "reset_after_commit_rate")
    rig.emu.configure({"reset_after_commit_rate": 1.0})
    summary = await rig.run([rig.replace("x.txt", old_uuid)])
    assert summary.failed == []
    assert rig.emu.stats.faults["reset_after_commit"] == 1
    (rec,) = rig.emu.files()
    assert (rec.name, rec.sha1) == ("x.txt", sha1(b"new!"))
    assert (rec.uuid == old_uuid) is (same_name == "version")
    assert rig.known() == {"x.txt": (rec.uuid, sha1(b"new!"))}


@pytest.mark.parametrize("naming", ["suffix", "uuid"])
async def test_reset_after_commit_with_random_names_ends_as_one_asset(rig, naming):
    rig.emu.configure({"naming": naming})
    rig.dam.pacer = flip_off(rig.emu, "reset_after_commit_rate")
    write(rig.root / "x.jpg", b"jpeg bytes")
    rig.emu.configure({"reset_after_commit_rate": 1.0})
    summary = await rig.run([rig.upload("x.jpg")])
    assert summary.failed == []
    assert dam_tree(rig.emu, REMOTE) == {"x.jpg": sha1(b"jpeg bytes")}
