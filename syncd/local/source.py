"""Reading local files for upload: one pass that streams the bytes and computes sha1,
with constant memory whatever the file size.

A file is opened through `localfs.open_checked`, so a symlink that now points outside the
root is refused and a file swapped since the scan is noticed. When the last byte has
been read the file is stat-ed again; if its size or mtime moved, the read is abandoned
with `FileChanged` before the final chunk is sent, so a half-written file is never
committed on the DAM.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import anyio

from syncd.local.fs import FileChanged, ScanError, UnsafePath, open_checked
from syncd.model import LocalFile, Skip

__all__ = ["CHUNK", "STREAM_CHUNK", "FileSource", "hash_file", "hash_files"]

CHUNK = 1 << 18
"""Read size; files up to this size are read in one call in the event loop."""
STREAM_CHUNK = 1 << 20
"""Read size of a streamed body: fewer trips to the worker thread per GiB."""


def _read_hashed(f: BinaryIO, h: hashlib._Hash, size: int) -> bytes:
    # Read and hash in the worker thread: sha1 releases the GIL, so hashing one chunk
    # overlaps with the event loop sending the one before.
    chunk = f.read(size)
    h.update(chunk)
    return chunk


def _check_unchanged(f: BinaryIO, expected: LocalFile) -> None:
    st = os.fstat(f.fileno())
    if st.st_size != expected.size or st.st_mtime_ns != expected.mtime_ns:
        raise FileChanged(f"{expected.path} changed while it was being read")


def hash_file(root: Path, expected: LocalFile, on_chunk: Callable[[], None] | None = None) -> str:
    """The sha1 of a local file (blocking; run it in a worker thread). `on_chunk` is called
    after each MiB: hashing a huge file is progress, not a hang."""
    h = hashlib.sha1(usedforsecurity=False)
    with open_checked(root, expected.path, expected) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            if on_chunk is not None:
                on_chunk()
        _check_unchanged(f, expected)
    return h.hexdigest()


class FileSource:
    """Upload bodies for one local file, each computing its sha1 as it is read.

    `body()` may be called once per upload attempt; `sha1` is set once a body has been
    read to the end.
    """

    def __init__(
        self, root: Path, local: LocalFile, on_chunk: Callable[[], None] | None = None
    ) -> None:
        self.root = root
        self.local = local
        self._on_chunk = on_chunk  # a long upload is progress, not a wedged worker
        self.sha1: str | None = local.sha1
        # Set when a streamed body stopped because of the file itself; aiohttp may
        # report that as a connection error, so the caller checks here first.
        self.error: OSError | ScanError | None = None

    def small(self) -> bool:
        """Whether the whole file is read in one call."""
        return self.local.size <= CHUNK

    def read_all(self) -> bytes:
        """The whole content of a small file (blocking, but one short read)."""
        with open_checked(self.root, self.local.path, self.local) as f:
            data = f.read(self.local.size + 1)
            _check_unchanged(f, self.local)
        if len(data) != self.local.size:
            raise FileChanged(f"{self.local.path} changed while it was being read")
        self.sha1 = hashlib.sha1(data, usedforsecurity=False).hexdigest()
        return data

    async def stream(self) -> AsyncIterator[bytes]:
        """The content in chunks, read in a worker thread so the event loop never blocks."""
        h = hashlib.sha1(usedforsecurity=False)
        try:
            f = await anyio.to_thread.run_sync(open_checked, self.root, self.local.path, self.local)
        except (OSError, ScanError) as exc:
            self.error = exc
            raise
        try:
            sent = 0
            pending = await anyio.to_thread.run_sync(_read_hashed, f, h, STREAM_CHUNK)
            while pending:
                chunk = await anyio.to_thread.run_sync(_read_hashed, f, h, STREAM_CHUNK)
                if not chunk:
                    # Stat again before the last chunk leaves, so a file that grew or
                    # was rewritten while we read it is never committed.
                    await anyio.to_thread.run_sync(_check_unchanged, f, self.local)
                    if sent + len(pending) != self.local.size:
                        raise FileChanged(f"{self.local.path} changed while it was being read")
                sent += len(pending)
                if self._on_chunk is not None:
                    self._on_chunk()
                yield pending
                pending = chunk
            self.sha1 = h.hexdigest()
        except (OSError, ScanError) as exc:
            self.error = exc
            raise
        finally:
            f.close()

    async def ensure_sha1(self) -> str:
        """The file's sha1, reading it once more if no body was read to the end."""
        if self.sha1 is None:
            self.sha1 = await anyio.to_thread.run_sync(hash_file, self.root, self.local)
        return self.sha1


async def hash_files(
    root: Path,
    local: dict[str, LocalFile],
    paths: Iterable[str],
    workers: int,
    on_chunk: Callable[[], None],
) -> list[Skip]:
    """Fill in the sha1 of `paths` in `local`, a few worker threads at a time, calling
    `on_chunk` per MiB. Returns the files that could not be read; files that vanished
    are dropped from `local`."""
    unreadable: list[Skip] = []
    todo = iter(paths)

    async def hasher() -> None:
        # A few hashers pull from one iterator: touching 100,000 files must not start
        # 100,000 tasks.
        for path in todo:
            lf = local[path]
            try:
                sha1 = await anyio.to_thread.run_sync(hash_file, root, lf, on_chunk)
            except FileNotFoundError:
                local.pop(path, None)
            except (FileChanged, UnsafePath, OSError) as exc:
                unreadable.append(Skip(path, f"cannot read the file: {exc}", failed=True))
            else:
                local[path] = replace(lf, sha1=sha1)

    async with anyio.create_task_group() as tg:
        for _ in range(max(2, workers // 2)):
            tg.start_soon(hasher)
    return unreadable
