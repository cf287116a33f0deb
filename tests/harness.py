"""The harness for end-to-end daemon tests: the real `syncd` daemon in a subprocess,
its JSON log read as it comes, and the emulator's store wrapped so that every commit
(upload, delete, rename, move) fires a `Pulse`, as does every log line. A wait re-checks
its predicate on each pulse, within the caller's `anyio.fail_after`; nothing polls.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.abc
import pytest

from syncd.config.schema import Config
from syncd.daemon.lifecycle import Daemon
from syncd.emulator import Emulator
from syncd.emulator.model import Folder, StoredFile
from syncd.service.systemd import Notifier
from tests.conftest import KEY, local_tree, refuse_in_unit, write, write_config

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
            r.client_path[len(prefix) :]: r.uuid
            for r in self.emu.files()
            if r.client_path.startswith(prefix)
        }

    def mirrors(self, expected: dict[str, str]) -> bool:
        """Whether the DAM holds exactly `expected` (path → sha1) under REMOTE, without
        duplicates. Cheap when the file count differs, so it can run on every commit."""
        if len(self.emu.store.all_files()) != len(expected):
            return False
        prefix = REMOTE + "/"
        seen = {
            r.client_path[len(prefix) :]: r.sha1
            for r in self.emu.files()
            if r.client_path.startswith(prefix)
        }
        return seen == expected

    def requests(self, route: str) -> int:
        return self.emu.stats.requests[route]

    def upload_requests(self) -> int:
        return sum(self.emu.stats.requests[r] for r in UPLOAD_ROUTES)


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
    cfg: Path,
    pulse: Pulse,
    *,
    ready_within: float = 20,
    env: dict[str, str] | None = None,
    args: Sequence[str] = (),
) -> AsyncIterator[DaemonRun]:
    """Start `syncd --config cfg` and wait (up to `ready_within` seconds) for its
    `daemon_ready` event; yield it; then stop it with SIGTERM and assert it exited 0
    (unless the block stopped or killed it itself). The daemon is killed when the block
    fails, and a timeout gets the end of the daemon's log as a note."""
    refuse_in_unit("the syncd daemon")
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    full_env["SYNCD_API_KEY"] = KEY
    full_env.update(env or {})
    proc = await anyio.open_process(
        [sys.executable, "-m", "syncd", "--config", str(cfg), "--log-format", "json", *args],
        env=full_env,
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


def config(
    tmp_path: Path, emu: Emulator, root: Path, dam: dict[str, Any] | None = None, **sync: Any
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return write_config(
        tmp_path / "syncd.toml",
        emu,
        [{"local": str(root), "remote": REMOTE}],
        dam=dam,
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


class NotifySocket:
    """A real `$NOTIFY_SOCKET`: a bound unix datagram socket that records every message
    syncd sends (each a dict of its `KEY=value` lines), firing `pulse` on each."""

    def __init__(self, address: str, pulse: Pulse | None = None) -> None:
        self.address = address  # a path, or "@name" for an abstract socket
        self.pulse = pulse or Pulse()
        self.messages: list[dict[str, str]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.setblocking(False)

    async def pump(self) -> None:
        """Receive until cancelled."""
        while True:
            await anyio.wait_readable(self.sock)
            data = self.sock.recv(65536).decode()
            self.messages.append(dict(line.split("=", 1) for line in data.splitlines()))
            self.pulse.fire()

    def sequence(self) -> list[str]:
        """The state messages in order (READY, RELOADING, STOPPING), without pings."""
        keys = ("READY", "RELOADING", "STOPPING")
        return [k for m in self.messages for k in keys if m.get(k) == "1"]

    def count(self, key: str) -> int:
        return sum(1 for m in self.messages if key in m)

    def close(self) -> None:
        self.sock.close()


@asynccontextmanager
async def notify_socket(directory: Path, pulse: Pulse | None = None) -> AsyncIterator[NotifySocket]:
    """A `NotifySocket` bound in `directory` (kept short: socket paths are limited to
    107 bytes), received from while the block runs."""
    listener = NotifySocket(str(directory / "notify.sock"), pulse)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.pump)
            yield listener
            tg.cancel_scope.cancel()
    finally:
        listener.close()


@asynccontextmanager
async def daemon_in_process(
    cfg: Config, listener: NotifySocket, **kw: Any
) -> AsyncIterator[Daemon]:
    """A `Daemon` running in this event loop (so a test can reach inside it), telling
    `listener` what it tells systemd. The block must stop it (`request_stop()`)."""
    notifier = Notifier(env={"NOTIFY_SOCKET": listener.address})
    daemon = Daemon(cfg, KEY, handle_signals=False, notifier=notifier, **kw)
    async with anyio.create_task_group() as tg:
        tg.start_soon(daemon.run)
        yield daemon
