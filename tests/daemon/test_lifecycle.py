"""End-to-end: the real `syncd` daemon (`syncd --config FILE`) in a subprocess against the
real emulator, on real files under tmp_path. Each test changes the local tree the way users
and their tools do (saves, renames, moves, deletes, bursts, crashes) and checks that the
DAM ends up an exact mirror, keeping asset uuids where a file only changed its name.

The emulator runs in the test's own event loop, so it keeps serving while a test awaits.
Waits never poll: the emulator's store is wrapped so that every commit (upload, delete,
rename, move) fires a `Pulse`, as does every log line the daemon writes; a wait re-checks
its predicate on each pulse, within `anyio.fail_after`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import threading
import time
from pathlib import Path

import anyio
import anyio.abc
import pytest

from syncd.emulator import Emulator
from tests.conftest import dam_tree, local_tree, write
from tests.harness import (
    BULK_DELETE,
    ONE_DELETE,
    REMOTE,
    DaemonRun,
    DamLog,
    config,
    make_files,
    mirrored,
    running_daemon,
    sha1,
)

# 1. create, modify, atomic save


@pytest.mark.parametrize("temp_name", ["a.txt.tmp", ".a.txt.tmp~", ".goutputstream-Q2XK7Z"])
async def test_create_modify_then_atomic_save(tmp_path, emulator, dam, temp_name):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    write(root / "other.jpg", b"other")
    async with running_daemon(cfg, dam.pulse) as d:
        a = root / "a.txt"
        a.write_text("one")
        with anyio.fail_after(10):
            await d.until(lambda: dam.uploads_of("a.txt"), what="the upload of a.txt")

        with a.open("a") as f:  # modified in place
            f.write(" and two")
        with anyio.fail_after(10):
            await mirrored(d, dam, root)

        # An editor's atomic save: the new content is written aside (a temporary name
        # that is ignored, or one that is not but lives shorter than the settle window),
        # then renamed over the file.
        temp = root / temp_name
        temp.write_text("one and two, saved atomically")
        os.replace(temp, a)
        with anyio.fail_after(10):
            await mirrored(d, dam, root)
    # Stopped (the batch in flight finished): a second upload of one save would show here.
    assert [u.sha1 for u in dam.uploads_of("a.txt")] == [
        sha1("one"),
        sha1("one and two"),
        sha1("one and two, saved atomically"),
    ]
    assert {u.path for u in dam.uploads} == {f"{REMOTE}/other.jpg", f"{REMOTE}/a.txt"}
    assert (d.total("sync_batch", "uploaded"), d.total("sync_batch", "updated")) == (1, 2)
    assert d.total("sync_batch", "deleted") == 0
    assert dam_tree(emulator, REMOTE) == local_tree(root)


# 2. renames and moves keep the asset


@pytest.mark.parametrize(
    ("files", "source", "target"),
    [
        pytest.param(("a.jpg", "b.jpg"), "a.jpg", "renamed.jpg", id="rename"),
        pytest.param(("one/a.jpg", "two/b.jpg"), "one/a.jpg", "two/a.jpg", id="move"),
        pytest.param(("a.jpg", "b.jpg"), "a.jpg", "A.jpg", id="case-only"),
    ],
)
async def test_a_renamed_or_moved_file_keeps_its_uuid(
    tmp_path, emulator, dam, files, source, target
):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    for name, data in zip(files, (b"alpha", b"beta"), strict=True):
        write(root / name, data)
    async with running_daemon(cfg, dam.pulse) as d:
        before = dam.uuids()
        assert set(before) == set(files)
        uploads = len(dam.uploads)
        (root / source).rename(root / target)
        with anyio.fail_after(10):
            await mirrored(d, dam, root)
    other = files[1]
    assert dam.uuids() == {target: before[source], other: before[other]}
    assert len(dam.uploads) == uploads
    assert dam.deleted == []
    assert d.total("sync_batch", "moved") == 1
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_directory_rename_keeps_every_uuid_and_uploads_nothing(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    names = ["a.jpg", "b.jpg", "c.png", "deep/d.jpg", "deep/er/e.gif"]
    for i, name in enumerate(names):
        write(root / "shoot" / name, f"content {i}")
    write(root / "keep.jpg", b"stays")
    async with running_daemon(cfg, dam.pulse) as d:
        before = dam.uuids()
        assert len(before) == len(names) + 1
        posts = dam.upload_requests()
        (root / "shoot").rename(root / "shoot 2024")
        with anyio.fail_after(10):
            await mirrored(d, dam, root)
    assert dam.uuids() == {
        **{f"shoot 2024/{n}": before[f"shoot/{n}"] for n in names},
        "keep.jpg": before["keep.jpg"],
    }
    assert dam.upload_requests() == posts
    assert dam.deleted == []
    assert d.total("sync_batch", "moved") == len(names)
    assert dam_tree(emulator, REMOTE) == local_tree(root)


# 3. deletes


async def test_delete_removes_the_asset(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    write(root / "a.jpg", b"alpha")
    write(root / "b.jpg", b"beta")
    async with running_daemon(cfg, dam.pulse) as d:
        before = dam.uuids()
        (root / "a.jpg").unlink()
        with anyio.fail_after(10):
            await mirrored(d, dam, root)
    assert dam.deleted == [before["a.jpg"]]
    assert dam.uuids() == {"b.jpg": before["b.jpg"]}
    assert d.total("sync_batch", "deleted") == 1
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_directory_delete_is_one_bulk_request(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    names = ["a.jpg", "b.jpg", "sub/c.jpg", "sub/deeper/d.jpg"]
    for i, name in enumerate(names):
        write(root / "gone" / name, f"content {i}")
    write(root / "keep.jpg", b"stays")
    async with running_daemon(cfg, dam.pulse) as d:
        before = dam.uuids()
        bulk = dam.requests(BULK_DELETE)
        await anyio.to_thread.run_sync(shutil.rmtree, root / "gone")
        with anyio.fail_after(10):
            await mirrored(d, dam, root)
            await d.wait_event("folder_removed", lambda e: e.get("remote") == f"{REMOTE}/gone")
    # The emptied DAM folders went with the directory.
    assert emulator.store.folder(f"{REMOTE}/gone") is None
    assert emulator.store.folder(f"{REMOTE}/gone/sub") is None
    assert emulator.store.folder(REMOTE) is not None
    assert sorted(dam.deleted) == sorted(before[f"gone/{n}"] for n in names)
    assert dam.requests(BULK_DELETE) == bulk + 1
    assert dam.requests(ONE_DELETE) == 0
    assert dam.uuids() == {"keep.jpg": before["keep.jpg"]}
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_delete_then_recreate_within_settle_window_is_an_update(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    write(root / "a.txt", "old content")
    write(root / "b.jpg", b"beta")
    async with running_daemon(cfg, dam.pulse) as d:
        bulk = dam.requests(BULK_DELETE)
        (root / "a.txt").unlink()
        (root / "a.txt").write_text("brand new content")
        with anyio.fail_after(10):
            await mirrored(d, dam, root)
    assert [u.sha1 for u in dam.uploads_of("a.txt")] == [
        sha1("old content"),
        sha1("brand new content"),
    ]
    # An update, not a delete and an upload: the daemon planned no delete (the emulator's
    # `override` policy retires the old asset itself when the new content lands).
    assert (d.total("sync_batch", "updated"), d.total("sync_batch", "deleted")) == (1, 0)
    assert dam.requests(BULK_DELETE) == bulk
    assert len(emulator.files()) == 2
    assert dam_tree(emulator, REMOTE) == local_tree(root)


# 4. a file still being written


async def test_growing_file_is_uploaded_once_complete(tmp_path, emulator, dam):
    root = tmp_path / "src"
    # The writer pauses 0.2 s between chunks, so the settle window must be longer than
    # that: with a shorter one each pause is (rightly) taken for the end of the file.
    cfg = config(tmp_path, emulator, root, settle_ms=500)
    chunks = [os.urandom(32 * 1024) for _ in range(10)]
    async with running_daemon(cfg, dam.pulse) as d:
        async with await anyio.open_file(root / "video.mov", "wb") as f:
            for i, chunk in enumerate(chunks):
                if i:
                    await anyio.sleep(0.2)
                await f.write(chunk)
                await f.flush()
        with anyio.fail_after(10):
            await mirrored(d, dam, root)
    assert [u.sha1 for u in dam.uploads_of("video.mov")] == [sha1(b"".join(chunks))]
    assert dam_tree(emulator, REMOTE) == local_tree(root)


# 5. a burst


async def test_burst_of_2000_files(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    async with running_daemon(cfg, dam.pulse) as d:
        # New directories too, as an unzip makes them: files land in one before its watch
        # exists, so only the scan of the new directory finds them.
        await anyio.to_thread.run_sync(make_files, root, 2000)
        with anyio.fail_after(40):
            await mirrored(d, dam, root)
    assert len(emulator.files()) == 2000
    assert dam_tree(emulator, REMOTE) == local_tree(root)


# 6. and 7. stopped in the middle of a burst


class FileStream:
    """Writes small files into `root` from a worker thread: a steady stream (as a copy or a
    camera import makes) rather than one burst, until stopped or `limit` files."""

    def __init__(self, root: Path, limit: int) -> None:
        self.root = root
        self.limit = limit
        self.written = 0
        self._stop = threading.Event()

    def run(self) -> None:
        for i in range(self.limit):
            if self._stop.is_set():
                return
            write(self.root / f"d{i % 10}" / f"f{i:05}.txt", f"file {i}\n")
            self.written = i + 1
            if i % 20 == 19:
                time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()


def journal_length(db: Path) -> int:
    """How many paths the daemon's journal holds (read while no daemon runs)."""
    with contextlib.closing(sqlite3.connect(db)) as conn:
        (n,) = conn.execute("SELECT count(*) FROM journal").fetchone()
    return int(n)


async def replayed(d: DaemonRun) -> None:
    """Wait until the paths queued at start (the journal) went through a batch."""
    queued = d.named("daemon_ready")[-1]["queued"]
    await d.until(
        lambda: d.total("sync_batch", "paths") >= queued, what=f"the replay of {queued} paths"
    )


# The premises of a scenario (the stop came mid-burst, the journal holds paths) are checked
# with pytest.fail and its outcome with assert: a failed premise means the test tested
# nothing, not that the daemon is wrong.


def assert_converged_once(
    d: DaemonRun, dam: DamLog, emulator: Emulator, root: Path, files: int
) -> None:
    """After a restart: an exact mirror, nothing deleted or refused, every file uploaded
    exactly once."""
    assert dam.deleted == []
    assert d.total("sync_batch", "refused_deletes") == 0
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    assert len(emulator.files()) == files
    assert len(dam.uploads) == files


async def test_kill_9_mid_burst_then_restart_converges(tmp_path, emulator, dam):
    root = tmp_path / "src"
    # Eight requests in flight at most: the kill must find syncd behind the writer.
    cfg = config(tmp_path, emulator, root, dam={"workers": 8})
    for i in range(10):
        (root / f"d{i}").mkdir()  # watched from the start: every file has its own events
    # A DAM with some latency: 500 uploads take more than the journal's 1 s period.
    emulator.configure({"slow_ms": 30})
    stream = FileStream(root, 3000)
    async with running_daemon(cfg, dam.pulse) as d, anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, stream.run)
        with anyio.fail_after(30):
            await d.until(lambda: len(dam.uploads) >= 500, what="500 uploads")
        await d.kill()
        stream.stop()
    if d.proc.returncode != -signal.SIGKILL:
        pytest.fail(f"exit code {d.proc.returncode}, not SIGKILL")
    files = len(local_tree(root))
    if len(emulator.files()) >= files or not journal_length(tmp_path / "state.db"):
        pytest.fail("the kill came too late to test anything")

    emulator.configure({"slow_ms": 0})
    async with running_daemon(cfg, dam.pulse, ready_within=40) as d:
        with anyio.fail_after(10):
            await replayed(d)
    # What had landed before the kill was matched, not sent again.
    assert_converged_once(d, dam, emulator, root, files)


async def test_sigterm_mid_burst_exits_0_and_the_next_start_finishes(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root, shutdown_grace_s=0.5)
    for i in range(10):
        (root / f"d{i}").mkdir()
    stream = FileStream(root, 3000)
    async with running_daemon(cfg, dam.pulse) as d, anyio.create_task_group() as tg:
        tg.start_soon(anyio.to_thread.run_sync, stream.run)
        with anyio.fail_after(30):
            await d.until(lambda: len(dam.uploads) >= 300, what="300 uploads")
        still_writing = stream.written < stream.limit
        code = await d.stop()
        stream.stop()
    if code != 0:
        pytest.fail(f"SIGTERM: exit code {code}; the log ends:\n{d.log_tail()}")
    if [e["forced"] for e in d.named("daemon_stopped")] != [False]:
        pytest.fail(f"no clean daemon_stopped event:\n{d.log_tail()}")
    files = len(local_tree(root))
    if not still_writing or len(emulator.files()) >= files:
        pytest.fail("the SIGTERM came too late to test anything")

    async with running_daemon(cfg, dam.pulse, ready_within=30) as d:
        if not d.named("journal_replayed"):
            pytest.fail("nothing was left in the journal: no replay to test")
        with anyio.fail_after(10):
            await replayed(d)
    assert_converged_once(d, dam, emulator, root, files)


async def test_batch_cut_by_sigterm_is_left_in_the_journal(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root, shutdown_grace_s=0.1)
    names = [f"f{i:02}.txt" for i in range(20)]
    async with running_daemon(cfg, dam.pulse) as d:
        # Slow enough that the batch of 20 uploads (8 at a time) outlasts the grace.
        emulator.configure({"slow_ms": 300})
        for name in names:
            write(root / name, name)
        with anyio.fail_after(10):
            await d.until(lambda: dam.uploads, what="the first upload")
        code = await d.stop()
    if code != 0:
        pytest.fail(f"SIGTERM: exit code {code}; the log ends:\n{d.log_tail()}")
    left = set(names) - set(dam.uuids())
    if not left:
        pytest.fail("the batch was not cut: nothing to test")

    emulator.configure({"slow_ms": 0})
    async with running_daemon(cfg, dam.pulse) as d:
        assert [e["paths"] >= len(left) for e in d.named("journal_replayed")] == [True]
        with anyio.fail_after(10):
            await replayed(d)
    assert dam.deleted == []
    assert dam_tree(emulator, REMOTE) == local_tree(root)


# 8. the root goes away


async def test_removed_root_deletes_nothing(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    for i in range(5):
        write(root / f"d{i % 2}" / f"f{i}.jpg", f"content {i}")
    async with running_daemon(cfg, dam.pulse) as d:
        before = dam.uuids()
        assert len(before) == 5
        await anyio.to_thread.run_sync(shutil.rmtree, root)
        with anyio.fail_after(10):
            event = await d.wait_event("folder_unusable")
        assert str(root) in event["problem"]
    assert dam.deleted == []
    assert dam.requests(BULK_DELETE) == dam.requests(ONE_DELETE) == 0
    assert dam.uuids() == before


@pytest.mark.parametrize("how", ["removed", "moved-away"])
async def test_a_replaced_root_is_watched_again(tmp_path, emulator, dam, how):
    # inotify follows neither: a removed root's watch is gone, and a moved one watches
    # the old directory under its new name.
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    for i in range(5):
        write(root / f"d{i % 2}" / f"f{i}.jpg", f"content {i}")
    backup = tmp_path / "backup"
    async with running_daemon(cfg, dam.pulse) as d:
        with anyio.fail_after(30):
            before = dam.uuids()
            await anyio.to_thread.run_sync(shutil.copytree, root, backup)
            if how == "removed":
                await anyio.to_thread.run_sync(shutil.rmtree, root)
            else:
                root.rename(tmp_path / "old")
            # Restored at once, before anyone could notice it was gone.
            await anyio.to_thread.run_sync(shutil.copytree, backup, root)
            await d.wait_event("watch_rearmed")
            write(root / "after.jpg", "new")
            await d.until(lambda: "after.jpg" in dam.uuids(), what="after.jpg")
    assert dam.deleted == []
    assert {k: v for k, v in dam.uuids().items() if k != "after.jpg"} == before


async def _mount_tmpfs(path: Path) -> bool:
    """Mount a tmpfs on `path`; False where this machine does not allow it."""
    if shutil.which("mount") is None:
        return False
    command = ["mount", "-t", "tmpfs", "syncd-test", str(path)]
    return (await anyio.run_process(command, check=False)).returncode == 0


async def test_an_unmounted_then_remounted_root_deletes_nothing_and_is_watched_again(
    tmp_path, emulator, dam
):
    root = tmp_path / "mnt"
    root.mkdir()
    if not await _mount_tmpfs(root):
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        for i in range(5):
            write(root / f"f{i}.jpg", f"content {i}")
        cfg = config(tmp_path, emulator, root)
        async with running_daemon(cfg, dam.pulse) as d:
            with anyio.fail_after(30):
                before = dam.uuids()
                await anyio.run_process(["umount", str(root)])  # the bare mount point stays
                await d.wait_event("watch_root_changed")
                assert await _mount_tmpfs(root)
                for i in range(5):
                    write(root / f"f{i}.jpg", f"content {i}")
                rearmed = len(d.named("watch_rearmed"))
                await d.until(lambda: len(d.named("watch_rearmed")) > rearmed, what="re-armed")
                write(root / "after.jpg", "new")
                await d.until(lambda: "after.jpg" in dam.uuids(), what="after.jpg")
        assert dam.deleted == []  # the empty mount point was never mirrored
        assert {k: v for k, v in dam.uuids().items() if k != "after.jpg"} == before
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.run_process(["umount", str(root)], check=False)


# 9. events that change no content (until a17c2ea, such a path was planned as a delete:
# a chmod, or the journal replayed at start, deleted the assets of files still there)


@pytest.mark.parametrize("target", ["a.jpg", "d"], ids=["file", "directory"])
async def test_chmod_deletes_nothing(tmp_path, emulator, dam, target):
    # A chmod (or chown, or a backup tool resetting times to the same value) makes the
    # watcher report the path with its stat unchanged: there is nothing to sync.
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    write(root / "a.jpg", b"alpha")
    write(root / "d" / "b.jpg", b"beta")
    write(root / "d" / "c.jpg", b"gamma")
    async with running_daemon(cfg, dam.pulse) as d:
        before = dam.uuids()
        (root / target).chmod(0o700)
        with anyio.fail_after(10):
            await d.wait_event("sync_batch")
    assert dam.deleted == []
    assert dam.uuids() == before
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_directory_event_spares_a_file_still_being_written(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root, settle_ms=300)
    write(root / "d" / "a.jpg", b"alpha")
    write(root / "d" / "log.txt", b"line 0\n")
    write(root / "c.jpg", b"gamma")
    async with running_daemon(cfg, dam.pulse) as d:
        async with await anyio.open_file(root / "d" / "log.txt", "ab") as f:
            for i in range(1, 21):
                if i == 3:
                    # The directory's own event comes while log.txt keeps changing.
                    (root / "d").chmod(0o700)
                await f.write(f"line {i}\n".encode())
                await f.flush()
                await anyio.sleep(0.05)
        final = sha1(b"".join(f"line {i}\n".encode() for i in range(21)))
        with anyio.fail_after(10):
            await d.until(
                lambda: [u for u in dam.uploads_of("d/log.txt") if u.sha1 == final],
                what="the upload of the finished log.txt",
            )
    assert dam.deleted == []
    assert d.total("sync_batch", "deleted") == 0
    assert dam_tree(emulator, REMOTE) == local_tree(root)
