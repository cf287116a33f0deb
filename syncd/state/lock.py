"""One syncd per state database: an exclusive `flock` on `<state>.lock`, which also
records the holder's pid so `syncd status` can say whether a daemon is running.

The kernel drops the lock when the process dies, however it dies, so a crash never
leaves a stale lock behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Self

from syncd.errors import StateError

__all__ = ["StateLock", "holder", "lock_path", "private_dir"]

_TRIES = 20


def lock_path(state: Path) -> Path:
    """The lock file beside a state database."""
    return state.with_name(state.name + ".lock")


class StateLock:
    """Held for as long as a run may write the state (`with StateLock(path):`).

    Raises:
        StateError: on entry, when another syncd holds it; the message names its pid.
    """

    def __init__(self, state: Path) -> None:
        self.path = lock_path(state)
        self._fd: int | None = None

    def __enter__(self) -> Self:
        try:
            private_dir(self.path.parent)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise StateError(f"cannot create the lock file {self.path}: {exc.strerror}") from None
        for _ in range(_TRIES):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                # `syncd status` holds a shared lock for an instant while it looks.
                time.sleep(0.05)
        else:
            pid = _read_pid(fd)
            os.close(fd)
            who = f"pid {pid}" if pid else "another process"
            raise StateError(
                f"another syncd ({who}) is using the state database {self.path.with_suffix('')};"
                " stop it first, or give this run its own [state] path"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:  # a full disk, most likely: the lock is held all the same
            os.close(fd)
            raise StateError(f"cannot write the lock file {self.path}: {exc.strerror}") from None
        self._fd = fd
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None


def private_dir(directory: Path) -> None:
    """Create `directory` (and its parents) readable by its owner only (0700), whatever
    the umask; an existing directory is left as it is."""
    if directory.is_dir():
        return
    old = os.umask(0o077)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    finally:
        os.umask(old)


def holder(state: Path) -> int | None:
    """The pid of the syncd holding the state's lock, or None when no syncd runs on it."""
    try:
        fd = os.open(lock_path(state), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return _read_pid(fd) or -1  # held, by a process that has not written its pid yet
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
