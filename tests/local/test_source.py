"""Tests of syncd.local.source: one-pass reading and hashing of local files for upload, and the
guard that abandons a read when the file changes underneath it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path
from typing import cast

import anyio
import pytest

from syncd.local.fs import FileChanged
from syncd.local.source import STREAM_CHUNK, FileSource, hash_file
from syncd.model import LocalFile
from tests.conftest import write


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def stat_of(root: Path, rel: str) -> LocalFile:
    st = (root / rel).stat()
    return LocalFile(rel, st.st_size, st.st_mtime_ns, st.st_ino)


def stream_of(source: FileSource) -> AsyncGenerator[bytes, None]:
    """The body generator, typed so it can be closed explicitly."""
    return cast(AsyncGenerator[bytes, None], source.stream())


async def collect(source: FileSource) -> list[bytes]:
    with anyio.fail_after(10):
        return [chunk async for chunk in source.stream()]


def test_read_all_returns_content_and_sets_sha1(tmp_path):
    data = b"small file\n" * 10
    write(tmp_path / "a.txt", data)
    source = FileSource(tmp_path, stat_of(tmp_path, "a.txt"))
    assert source.small()
    assert source.sha1 is None
    assert source.read_all() == data
    assert source.sha1 == sha1(data)


def test_read_all_refuses_a_file_changed_since_the_scan(tmp_path):
    write(tmp_path / "a.txt", b"before")
    local = stat_of(tmp_path, "a.txt")
    write(tmp_path / "a.txt", b"after, and longer")
    source = FileSource(tmp_path, local)
    with pytest.raises(FileChanged):
        source.read_all()
    assert source.sha1 is None


def test_read_all_of_a_vanished_file_raises_file_not_found(tmp_path):
    write(tmp_path / "a.txt", b"x")
    local = stat_of(tmp_path, "a.txt")
    (tmp_path / "a.txt").unlink()
    with pytest.raises(FileNotFoundError):
        FileSource(tmp_path, local).read_all()


@pytest.mark.parametrize("size", [STREAM_CHUNK + 1, 2 * STREAM_CHUNK, 2 * STREAM_CHUNK + 12345])
async def test_stream_yields_chunks_and_computes_sha1(tmp_path, size):
    data = os.urandom(size)
    write(tmp_path / "d" / "big.bin", data)
    source = FileSource(tmp_path, stat_of(tmp_path, "d/big.bin"))
    assert not source.small()
    chunks = await collect(source)
    assert b"".join(chunks) == data
    assert len(chunks) == -(-size // STREAM_CHUNK)
    assert all(len(c) <= STREAM_CHUNK for c in chunks)
    assert source.sha1 == sha1(data)
    assert source.error is None


async def test_stream_of_an_empty_file(tmp_path):
    write(tmp_path / "empty", b"")
    source = FileSource(tmp_path, stat_of(tmp_path, "empty"))
    assert await collect(source) == []
    assert source.sha1 == sha1(b"")


async def test_stream_stops_before_the_last_chunk_when_the_file_grows(tmp_path):
    data = os.urandom(2 * STREAM_CHUNK + 10)
    path = write(tmp_path / "grow.bin", data)
    source = FileSource(tmp_path, stat_of(tmp_path, "grow.bin"))
    sent: list[bytes] = []
    with anyio.fail_after(10):
        async with aclosing(stream_of(source)) as gen:
            sent.append(await gen.__anext__())
            with path.open("ab") as f:  # a writer appends while the upload is running
                f.write(b"more bytes" * 100)
            sent.append(await gen.__anext__())  # read before the append
            with pytest.raises(FileChanged):
                await gen.__anext__()
    # The final chunk never left, so the DAM cannot commit a torn file.
    assert sum(map(len, sent)) < len(data)
    assert isinstance(source.error, FileChanged)
    assert source.sha1 is None


async def test_stream_stops_when_the_file_is_touched_while_read(tmp_path):
    data = os.urandom(STREAM_CHUNK + 10)
    path = write(tmp_path / "t.bin", data)
    local = stat_of(tmp_path, "t.bin")
    source = FileSource(tmp_path, local)
    with anyio.fail_after(10):
        async with aclosing(stream_of(source)) as gen:
            await gen.__anext__()
            os.utime(path, ns=(local.mtime_ns + 10**9, local.mtime_ns + 10**9))
            with pytest.raises(FileChanged):
                await gen.__anext__()
    assert source.sha1 is None


async def test_stream_stops_when_the_file_shrinks(tmp_path):
    data = os.urandom(2 * STREAM_CHUNK + 10)
    path = write(tmp_path / "s.bin", data)
    source = FileSource(tmp_path, stat_of(tmp_path, "s.bin"))
    with anyio.fail_after(10):
        async with aclosing(stream_of(source)) as gen:
            await gen.__anext__()
            os.truncate(path, STREAM_CHUNK + 5)
            with pytest.raises(FileChanged):
                await gen.__anext__()


async def test_stream_of_a_file_changed_since_the_scan_fails_at_once(tmp_path):
    write(tmp_path / "a.bin", os.urandom(STREAM_CHUNK + 1))
    local = stat_of(tmp_path, "a.bin")
    write(tmp_path / "a.bin", os.urandom(STREAM_CHUNK + 2))
    with pytest.raises(FileChanged):
        await collect(FileSource(tmp_path, local))


@pytest.mark.parametrize("change", ["rewrite", "delete"])
async def test_stream_records_a_failure_to_open_in_error(tmp_path, change):
    path = write(tmp_path / "a.bin", os.urandom(STREAM_CHUNK + 1))
    local = stat_of(tmp_path, "a.bin")
    if change == "rewrite":
        write(path, os.urandom(STREAM_CHUNK + 2))
    else:
        path.unlink()
    source = FileSource(tmp_path, local)
    with pytest.raises((FileChanged, FileNotFoundError)):
        await collect(source)
    # aiohttp reports an exception raised by a streamed body as a connection error; the
    # uploader can only tell "the file changed" from "the network failed" through this.
    assert isinstance(source.error, FileChanged | FileNotFoundError)


def test_hash_file(tmp_path):
    data = os.urandom(3 * (1 << 20) + 7)  # several of hash_file's reads
    write(tmp_path / "x" / "h.bin", data)
    assert hash_file(tmp_path, stat_of(tmp_path, "x/h.bin")) == sha1(data)


def test_hash_file_refuses_a_changed_file(tmp_path):
    write(tmp_path / "h.bin", b"one")
    local = stat_of(tmp_path, "h.bin")
    write(tmp_path / "h.bin", b"three")
    with pytest.raises(FileChanged):
        hash_file(tmp_path, local)


async def test_ensure_sha1_reads_only_when_needed(tmp_path):
    write(tmp_path / "a.txt", b"abc")
    local = stat_of(tmp_path, "a.txt")
    with anyio.fail_after(10):
        assert await FileSource(tmp_path, local).ensure_sha1() == sha1(b"abc")
        # A known sha1 is trusted without reading the file again.
        local.sha1 = "0" * 40
        assert await FileSource(tmp_path, local).ensure_sha1() == "0" * 40


def test_hashing_reports_progress_per_mib(tmp_path: Path) -> None:
    data = os.urandom(2 * (1 << 20) + 5)  # two full MiB and a bit
    write(tmp_path / "big.bin", data)
    calls: list[None] = []
    digest = hash_file(tmp_path, stat_of(tmp_path, "big.bin"), lambda: calls.append(None))
    assert digest == sha1(data)
    assert len(calls) == 3
