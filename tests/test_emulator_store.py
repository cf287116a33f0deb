"""Tests of the emulator's pure parts: store, policies, options, wire shapes, token bucket."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from syncd.emulator.blobs import Blobs
from syncd.emulator.faults import Faults, TokenBucket
from syncd.emulator.formdata import FormReader, boundary_of, disposition
from syncd.emulator.model import EmulatorError, normalize_folder
from syncd.emulator.options import Options
from syncd.emulator.shapes import iso_ms, parse_sort, parse_time_ms, pretty_size
from syncd.emulator.store import Store


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_store(clock: FakeClock | None = None, **options: object) -> Store:
    return Store(
        Options(**options),  # type: ignore[arg-type]
        Blobs("memory"),
        rng=random.Random(1),
        clock=clock or FakeClock(),
    )


def up(store: Store, folder: str, name: str, data: bytes = b"x") -> str:
    import hashlib

    sha1 = hashlib.sha1(data).hexdigest()
    return store.upload(folder, name, sha1=sha1, size=len(data), content=data).uuid


def test_counters_follow_adds_removes_and_moves() -> None:
    store = make_store()
    a = up(store, "/a/b/c", "1.txt", b"12345")
    up(store, "/a/b", "2.txt", b"123")
    root, fa, fb, fc = (store.folder(p) for p in ("/", "/a", "/a/b", "/a/b/c"))
    assert root is not None
    assert fa is not None
    assert fb is not None
    assert fc is not None
    assert (root.files_recursive, root.bytes_recursive) == (2, 8)
    assert (fb.files_recursive, len(fb.files), fc.files_recursive) == (2, 1, 1)
    file_a = store.file(a)
    assert file_a is not None
    store.move([file_a], root)
    assert (fa.files_recursive, fc.files_recursive, root.files_recursive) == (1, 0, 2)
    store.delete_files([a, "missing"])
    assert (root.files_recursive, root.bytes_recursive) == (1, 3)


def test_listing_is_cached_until_a_mutation() -> None:
    store = make_store()
    for i in range(5):
        up(store, "/x", f"{i}.txt", str(i).encode())
    first = store.list_files(store.root, recursive=True)
    assert store.list_files(store.root, recursive=True) is first
    assert [f.name for f in first.files] == [f"{i}.txt" for i in range(5)]
    up(store, "/x", "5.txt", b"5")
    second = store.list_files(store.root, recursive=True)
    assert second is not first
    assert len(second.files) == 6
    by_name = store.list_files(store.root, recursive=True, sort=("name", True))
    assert by_name.files[0].name == "5.txt"


def test_version_keeps_uuid_and_moves_modified_forward_within_one_ms() -> None:
    clock = FakeClock()
    store = make_store(clock, same_name="version")
    first = up(store, "/", "a.txt", b"one")
    before = store.file(first)
    assert before is not None
    old_modified = before.modified_ms
    again = up(store, "/", "a.txt", b"two")
    assert again == first
    after = store.file(first)
    assert after is not None
    assert (after.version, after.overwrite, after.size) == (2, True, 3)
    assert after.modified_ms > old_modified  # same clock reading, still strictly later
    assert store.root.bytes_recursive == 3


def test_override_replaces_the_asset_with_a_new_uuid() -> None:
    store = make_store(same_name="override")
    first = up(store, "/", "a.txt", b"one")
    second = up(store, "/", "a.txt", b"two")
    assert second != first
    assert store.file(first) is None
    assert store.blobs.get(first) is None
    assert store.blobs.get(second) == b"two"


def test_suffix_naming_compares_original_names_only_for_identical_content() -> None:
    store = make_store(naming="suffix", same_name="refuse")
    uuid = up(store, "/", "photo.jpg", b"one")
    stored = store.file(uuid)
    assert stored is not None
    assert re.fullmatch(r"photo-[A-Za-z0-9]{8}\.jpg", stored.name)
    other = up(store, "/", "photo.jpg", b"two")  # random names: no same-name refusal
    assert other != uuid
    with pytest.raises(EmulatorError) as caught:
        up(store, "/", "photo.jpg", b"one")
    assert caught.value.code == "SAME_ASSET_EXISTS_SKIP_UPLOAD"
    assert caught.value.extra["existing_file_uuid"] == uuid


def test_delete_folders_is_all_or_nothing_and_handles_parent_with_child() -> None:
    store = make_store()
    parent = store.ensure_folder("/p")
    child = store.ensure_folder("/p/c")
    up(store, "/q", "f.txt")
    q = store.folder("/q")
    assert q is not None
    with pytest.raises(EmulatorError) as caught:
        store.delete_folders([parent.uuid])  # the child is not being deleted
    assert caught.value.code == "FOLDER_NOT_EMPTY"
    with pytest.raises(EmulatorError):
        store.delete_folders([child.uuid, q.uuid])
    assert store.folder("/p/c") is not None  # nothing went
    assert store.delete_folders([parent.uuid, child.uuid, "nope"]) == [child.uuid, parent.uuid]
    assert store.folder("/p") is None
    with pytest.raises(EmulatorError) as root:
        store.delete_folders([store.root.uuid])
    assert root.value.status == 403


def test_disk_blobs_move_staged_files_into_place(tmp_path: Path) -> None:
    blobs = Blobs("disk", tmp_path)
    staged = blobs.staging_path()
    staged.write_bytes(b"data")
    blobs.put("u1", staged)
    stored = blobs.get("u1")
    assert isinstance(stored, Path)
    assert stored.read_bytes() == b"data"
    assert not staged.exists()
    blobs.delete("u1")
    assert blobs.get("u1") is None


def test_options_validate_and_update_atomically() -> None:
    options = Options()
    with pytest.raises(ValueError, match="naming"):
        options.update({"rate_limit": 5, "naming": "bogus"})
    assert options.rate_limit == 0
    options.update({"same-name": "version", "error_rate": 0.5})
    assert (options.same_name, options.error_rate) == ("version", 0.5)
    bad_values = {
        "error_rate": 2,
        "size_as_int": 1,
        "nope": 1,
        "same_asset_status": 99,
        "seed": "x",
    }
    for key, value in bad_values.items():
        with pytest.raises(ValueError, match=key):
            options.update({key: value})
    with pytest.raises(ValueError, match="retry_after_style"):
        Options(retry_after_style="sometimes")  # type: ignore[arg-type]


def test_wire_helpers() -> None:
    assert [pretty_size(n) for n in (0, 1023, 4096, 1536, 5 * 2**20)] == [
        "0 B",
        "1023 B",
        "4 KB",
        "1.5 KB",
        "5 MB",
    ]
    assert iso_ms(1_700_000_000_123) == "2023-11-14T22:13:20.123Z"
    assert parse_sort(None) == ("created_at", False)
    assert parse_sort("updated_at,desc") == ("modified_at", True)
    assert parse_sort("filename:asc") == ("name", False)
    with pytest.raises(EmulatorError):
        parse_sort("size:up")
    assert parse_time_ms("2023-11-14T22:13:20.123Z", "t") == 1_700_000_000_123
    assert parse_time_ms("2023-11-14T23:13:20+01:00", "t") == 1_700_000_000_000
    assert parse_time_ms("1700000000", "t") == 1_700_000_000_000
    with pytest.raises(EmulatorError):
        parse_time_ms("yesterday", "t")
    assert normalize_folder("a//b/") == "/a/b"
    with pytest.raises(EmulatorError):
        normalize_folder("/a/../b")


def test_token_bucket_refills_at_the_rate() -> None:
    clock = FakeClock(0.0)
    bucket = TokenBucket(clock)
    assert [bucket.take(2) for _ in range(2)] == [0.0, 0.0]  # burst of 2
    assert bucket.take(2) == pytest.approx(0.5)
    clock.now = 0.5
    assert bucket.take(2) == 0.0


def test_faults_draw_nothing_when_off_and_follow_the_seed() -> None:
    options = Options(error_rate=0.5, seed=7)
    one, two = Faults(options, random.Random(7)), Faults(options, random.Random(7))
    draws = [(one.server_error() is None, two.server_error() is None) for _ in range(20)]
    assert all(a == b for a, b in draws)
    assert {a for a, _ in draws} == {True, False}
    options.error_rate = 0
    rng = random.Random(3)
    state = rng.getstate()
    Faults(options, rng).server_error()
    assert rng.getstate() == state


class ChunkedStream:
    """Delivers a body in fixed-size pieces, so delimiters straddle reads."""

    def __init__(self, data: bytes, size: int) -> None:
        self.pieces = [data[i : i + size] for i in range(0, len(data), size)]

    async def readany(self) -> bytes:
        return self.pieces.pop(0) if self.pieces else b""


@pytest.mark.parametrize("piece", [1, 7, 100_000])
async def test_form_reader_handles_any_chunking(piece: int) -> None:
    big = bytes(range(256)) * 40 + b"\r\n--notquite"
    body = (
        b"preamble\r\n--XyZ\r\n"
        b'Content-Disposition: form-data; name="info[f]"\r\n\r\n{"name": "x"}\r\n'
        b"--XyZ\r\n"
        b'Content-Disposition: form-data; name="f"; filename="a%20b.bin"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n" + big + b"\r\n"
        b'--XyZ\r\nContent-Disposition: form-data; name="skipped"\r\n\r\nzzz\r\n'
        b"--XyZ--\r\nepilogue"
    )
    reader = FormReader(
        ChunkedStream(body, piece), boundary_of("multipart/form-data; boundary=XyZ")
    )
    seen = []
    while (headers := await reader.next_part()) is not None:
        name, filename = disposition(headers["content-disposition"])
        if name == "skipped":
            continue
        seen.append((name, filename, b"".join([c async for c in reader.body()])))
    assert seen == [("info[f]", None, b'{"name": "x"}'), ("f", "a b.bin", big)]


async def test_form_reader_rejects_truncated_bodies() -> None:
    body = b'--B\r\nContent-Disposition: form-data; name="f"; filename="x"\r\n\r\nabc'
    reader = FormReader(ChunkedStream(body, 5), "B")
    assert await reader.next_part() is not None
    with pytest.raises(EmulatorError, match="ended before"):
        async for _ in reader.body():
            pass
    with pytest.raises(EmulatorError):
        boundary_of("application/json")
    assert disposition("form-data; name=f; filename*=utf-8''%E6%97%A5.txt") == ("f", "日.txt")
