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
import hashlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
import pytest

from syncd.emulator import Emulator
from syncd.emulator.model import Folder, StoredFile
from tests.conftest import KEY, dam_tree, local_tree, write, write_config

T = TypeVar("T")

REMOTE = "/x"
UPLOAD_ROUTES = ("POST /{token}/v4/files", "PUT /{token}/v4/files")
BULK_DELETE = "DELETE /{token}/v4/files"
ONE_DELETE = "DELETE /{token}/v4/files/{uuid}"


class Pulse:
    """Wakes every waiter whenever something it may be waiting for has happened."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def wait(self) -> None:
        """Until the next `fire()`."""
        await self._event.wait()


@dataclass(frozen=True)
class Upload:
    """One upload the emulator committed."""

    path: str  # the original path on the DAM
    sha1: str
    uuid: str


@dataclass
class DamLog:
    """What the emulator's store did, recorded by wrapping its methods; each commit fires
    `pulse`."""

    emu: Emulator
    pulse: Pulse = field(default_factory=Pulse)
    uploads: list[Upload] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # uuids that existed

    def hook(self, monkeypatch: pytest.MonkeyPatch) -> None:
        store = self.emu.store
        upload, delete_files = store.upload, store.delete_files
        rename, move = store.rename, store.move

        def on_upload(folder_path: str, original_name: str, **kw: Any) -> StoredFile:
            f = upload(folder_path, original_name, **kw)
            self.uploads.append(
                Upload(f"{f.folder.path.rstrip('/')}/{original_name}", f.sha1, f.uuid)
            )
            self.pulse.fire()
            return f

        def on_delete(uuids: Iterable[str]) -> list[str]:
            gone = delete_files(uuids)
            self.deleted.extend(gone)
            self.pulse.fire()
            return gone

        def on_rename(f: StoredFile, new_name: str) -> StoredFile:
            renamed = rename(f, new_name)
            self.pulse.fire()
            return renamed

        def on_move(files: Sequence[StoredFile], folder: Folder) -> list[StoredFile]:
            moved = move(files, folder)
            self.pulse.fire()
            return moved

        monkeypatch.setattr(store, "upload", on_upload)
        monkeypatch.setattr(store, "delete_files", on_delete)
        monkeypatch.setattr(store, "rename", on_rename)
        monkeypatch.setattr(store, "move", on_move)

    def uploads_of(self, rel: str) -> list[Upload]:
        return [u for u in self.uploads if u.path == f"{REMOTE}/{rel}"]

    def uuids(self) -> dict[str, str]:
        """Relative path → uuid of every asset under REMOTE."""
        prefix = REMOTE + "/"
        return {
            r.original_path[len(prefix) :]: r.uuid
            for r in self.emu.files()
            if r.original_path.startswith(prefix)
        }

    def mirrors(self, expected: dict[str, str]) -> bool:
        """Whether the DAM holds exactly `expected` (path → sha1) under REMOTE, without
        duplicates. Cheap when the file count differs, so it can run on every commit."""
        if len(self.emu.store.all_files()) != len(expected):
            return False
        prefix = REMOTE + "/"
        seen = {
            r.original_path[len(prefix) :]: r.sha1
            for r in self.emu.files()
            if r.original_path.startswith(prefix)
        }
        return seen == expected

    def requests(self, route: str) -> int:
        return self.emu.stats.requests[route]

    def upload_requests(self) -> int:
        return sum(self.emu.stats.requests[r] for r in UPLOAD_ROUTES)


@pytest.fixture
def dam(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> DamLog:
    log = DamLog(emulator)
    log.hook(monkeypatch)
    return log


class DaemonRun:
    """One running `syncd --config FILE` process and the JSON events it logged so far."""

    def __init__(self, proc: anyio.abc.Process, pulse: Pulse) -> None:
        self.proc = proc
        self.pulse = pulse
        self.lines: list[str] = []
        self.events: list[dict[str, Any]] = []
        self.eof = anyio.Event()

    async def read_stderr(self) -> None:
        assert self.proc.stderr is not None
        pending = b""
        try:
            async for chunk in self.proc.stderr:
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    self._line(line)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass
        if pending:
            self._line(pending)
        self.eof.set()
        self.pulse.fire()

    def _line(self, raw: bytes) -> None:
        line = raw.decode("utf-8", "replace")
        self.lines.append(line)
        if line.startswith("{"):
            self.events.append(json.loads(line))
        self.pulse.fire()

    def named(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == name]

    def total(self, name: str, figure: str) -> int:
        """The sum of one figure over every `name` event (e.g. `sync_batch`, `updated`)."""
        return sum(e[figure] for e in self.named(name))

    def log_tail(self, n: int = 25) -> str:
        return "\n".join(self.lines[-n:])

    async def until(self, predicate: Callable[[], T], *, what: str) -> T:
        """Wait until `predicate()` is truthy (re-checked on every DAM commit and log line)
        and return its value; fails at once if the daemon exits meanwhile. The caller
        bounds the wait with `anyio.fail_after`."""
        while not (result := predicate()):
            if self.eof.is_set() or self.proc.returncode is not None:
                pytest.fail(
                    f"the daemon exited ({self.proc.returncode}) while waiting for {what};"
                    f" its log ends:\n{self.log_tail()}"
                )
            await self.pulse.wait()
        return result

    async def wait_event(
        self, name: str, predicate: Callable[[dict[str, Any]], bool] = lambda e: True
    ) -> dict[str, Any]:
        """The first logged `name` event that matches `predicate`."""

        def found() -> dict[str, Any] | None:
            return next((e for e in self.events if e.get("event") == name and predicate(e)), None)

        event = await self.until(found, what=f"a {name!r} event")
        assert event is not None
        return event

    async def stop(self) -> int:
        """SIGTERM, then wait for the exit and the end of the log; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        with anyio.fail_after(20):
            code = await self.proc.wait()
            await self.eof.wait()
        return code

    async def kill(self) -> None:
        """SIGKILL: no chance to save anything."""
        self.proc.kill()
        with anyio.fail_after(10):
            await self.proc.wait()
            await self.eof.wait()


@asynccontextmanager
async def running_daemon(
    cfg: Path, pulse: Pulse, *, ready_within: float = 20
) -> AsyncIterator[DaemonRun]:
    """Start `syncd --config cfg` and wait (up to `ready_within` seconds) for its
    `daemon_ready` event; yield it; then stop it with SIGTERM and assert it exited 0
    (unless the block stopped or killed it itself). The daemon is killed when the block
    fails, and a timeout gets the end of the daemon's log as a note."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env["SYNCD_API_KEY"] = KEY
    proc = await anyio.open_process(
        [sys.executable, "-m", "syncd", "--config", str(cfg), "--log-format", "json"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
    )
    run = DaemonRun(proc, pulse)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(run.read_stderr)
            try:
                with anyio.fail_after(ready_within):
                    await run.wait_event("daemon_ready")
                yield run
            except BaseException as exc:
                if isinstance(exc, TimeoutError):
                    exc.add_note(f"the daemon's log ends:\n{run.log_tail()}")
                with anyio.CancelScope(shield=True):
                    if proc.returncode is None:
                        await run.kill()
                raise
            if proc.returncode is None:
                code = await run.stop()
                assert code == 0, f"exit code {code}; the log ends:\n{run.log_tail()}"
            with anyio.fail_after(5):
                await run.eof.wait()
    except BaseExceptionGroup as group:
        # Only the block (or the teardown) can fail here: show its error, not a group.
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
    finally:
        with anyio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.kill()
            await proc.aclose()


def sha1(data: bytes | str) -> str:
    return hashlib.sha1(data.encode() if isinstance(data, str) else data).hexdigest()


def config(tmp_path: Path, emu: Emulator, root: Path, **sync: Any) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return write_config(
        tmp_path / "syncd.toml",
        emu,
        [{"local": str(root), "remote": REMOTE}],
        sync={"settle_ms": 100, **sync},
    )


def make_files(root: Path, n: int) -> None:
    """n small files with distinct content, spread over 10 directories."""
    for i in range(n):
        write(root / f"d{i % 10}" / f"f{i:05}.txt", f"file {i}\n")


async def mirrored(d: DaemonRun, dam: DamLog, root: Path) -> None:
    """Wait until the DAM mirrors `root` as it is now (the caller bounds the wait)."""
    expected = await anyio.to_thread.run_sync(local_tree, root)
    await d.until(lambda: dam.mirrors(expected), what=f"a mirror of {root}")


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


async def test_rename_keeps_the_uuid(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    write(root / "a.jpg", b"alpha")
    write(root / "b.jpg", b"beta")
    async with running_daemon(cfg, dam.pulse) as d:
        before = dam.uuids()
        assert set(before) == {"a.jpg", "b.jpg"}
        uploads = len(dam.uploads)
        (root / "a.jpg").rename(root / "renamed.jpg")
        with anyio.fail_after(10):
            await mirrored(d, dam, root)
    assert dam.uuids() == {"renamed.jpg": before["a.jpg"], "b.jpg": before["b.jpg"]}
    assert len(dam.uploads) == uploads
    assert dam.deleted == []
    assert d.total("sync_batch", "moved") == 1
    assert dam_tree(emulator, REMOTE) == local_tree(root)


async def test_move_across_directories_keeps_the_uuid(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    write(root / "one" / "a.jpg", b"alpha")
    write(root / "two" / "b.jpg", b"beta")
    async with running_daemon(cfg, dam.pulse) as d:
        before = dam.uuids()
        uploads = len(dam.uploads)
        (root / "one" / "a.jpg").rename(root / "two" / "a.jpg")
        with anyio.fail_after(10):
            await mirrored(d, dam, root)
    assert dam.uuids() == {"two/a.jpg": before["one/a.jpg"], "two/b.jpg": before["two/b.jpg"]}
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


async def test_case_only_rename_keeps_the_uuid(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
    write(root / "a.jpg", b"alpha")
    write(root / "b.jpg", b"beta")
    async with running_daemon(cfg, dam.pulse) as d:
        before = dam.uuids()
        uploads = len(dam.uploads)
        (root / "a.jpg").rename(root / "A.jpg")
        with anyio.fail_after(10):
            await mirrored(d, dam, root)
    assert dam.uuids() == {"A.jpg": before["a.jpg"], "b.jpg": before["b.jpg"]}
    assert len(dam.uploads) == uploads
    assert dam.deleted == []
    assert d.total("sync_batch", "moved") == 1
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


async def test_kill_9_mid_burst_then_restart_converges(tmp_path, emulator, dam):
    root = tmp_path / "src"
    cfg = config(tmp_path, emulator, root)
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
    assert dam.deleted == []
    assert d.total("sync_batch", "refused_deletes") == 0
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    assert len(emulator.files()) == files
    # What had landed before the kill was matched, not sent again.
    assert len(dam.uploads) == files


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
    assert dam.deleted == []
    assert d.total("sync_batch", "refused_deletes") == 0
    assert dam_tree(emulator, REMOTE) == local_tree(root)
    assert len(emulator.files()) == files
    assert len(dam.uploads) == files


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
