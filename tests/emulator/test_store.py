"""Tests of the emulator's pure parts: store, policies, options, wire shapes, token bucket."""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from syncd.emulator.blobs import Blobs
from syncd.emulator.faults import Faults, TokenBucket
from syncd.emulator.formdata import FormReader, boundary_of, disposition
from syncd.emulator.model import EmulatorError, FolderCounts, normalize_folder
from syncd.emulator.options import Options
from syncd.emulator.permissions import PERMISSIONS, ROUTE_PERMISSIONS, denied
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


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def up(store: Store, folder: str, name: str, data: bytes = b"x") -> str:
    return store.upload(folder, name, sha1=sha1(data), size=len(data), content=data).uuid


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
    store = make_store(sort="honoured")
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


@pytest.mark.parametrize("same_asset_by", ["stored", "sent"])
def test_suffix_naming_skips_identical_content_only_when_names_sent_compare(
    same_asset_by: str,
) -> None:
    store = make_store(naming="suffix", same_name="refuse", same_asset_by=same_asset_by)
    uuid = up(store, "/", "photo.jpg", b"one")
    stored = store.file(uuid)
    assert stored is not None
    assert re.fullmatch(r"photo-[A-Za-z0-9]{8}\.jpg", stored.name)
    other = up(store, "/", "photo.jpg", b"two")  # random names: no same-name refusal
    assert other != uuid
    if same_asset_by == "stored":
        # A fresh random name matches no stored name: identical content is stored again.
        assert up(store, "/", "photo.jpg", b"one") not in (uuid, other)
        return
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


# ---- switches for undocumented DAM behaviour (docs/dam-api.md §12) --------------------------


def listed(store: Store, folder: str = "/", **query: Any) -> list[str]:
    """The paths a recursive listing of `folder` shows, in order."""
    found = store.folder(folder)
    assert found is not None
    return [f.path for f in store.list_files(found, recursive=True, **query).files]


def test_q_match_modes() -> None:
    store = make_store(sort="honoured")
    up(store, "/", "Summer Sale.jpg", b"1")
    up(store, "/", "presale-2024.png", b"2")
    beach = store.file(up(store, "/", "holiday.jpg", b"3"))
    assert beach is not None
    store.rename(beach, "beach.jpg")  # info.name stays holiday.jpg
    every = ["/Summer Sale.jpg", "/presale-2024.png", "/beach.jpg"]
    expected = {
        "stored": {"SALE": every[:2], "holiday": [], "beach": ["/beach.jpg"]},
        "both": {"SALE": every[:2], "holiday": ["/beach.jpg"], "beach": ["/beach.jpg"]},
        "words": {"SALE": ["/Summer Sale.jpg"], "2024": ["/presale-2024.png"], "sale.jpg": []},
        "ignored": {"SALE": every, "nothing like it": every},
    }
    for mode, searches in expected.items():
        store.options.q_match = mode  # type: ignore[assignment]
        for q, paths in searches.items():
            assert listed(store, q=q) == paths, (mode, q)


def test_updated_after_modes() -> None:
    clock = FakeClock(1_700_000_000.0)
    store = make_store(clock, sort="honoured")
    a = store.file(up(store, "/", "a.txt", b"a"))
    assert a is not None
    clock.now += 0.5  # same second as `a`
    up(store, "/", "b.txt", b"b")
    clock.now += 1.0  # the next second
    up(store, "/", "c.txt", b"c")
    after = float(a.modified_ms)
    expected = {
        "exact": ["/b.txt", "/c.txt"],
        "second": ["/c.txt"],  # b changed in the threshold's own second: missed
        "ignored": ["/a.txt", "/b.txt", "/c.txt"],
    }
    for mode, paths in expected.items():
        store.options.updated_after = mode  # type: ignore[assignment]
        assert listed(store, updated_after_ms=after) == paths, mode


def test_sort_and_page_drift() -> None:
    clock = FakeClock()
    store = make_store(clock)
    for name in ("b.txt", "a.txt", "c.txt"):
        clock.now += 1
        up(store, "/", name, name.encode())
    by_created = listed(store, sort=("created_at", False))
    by_name_desc = listed(store, sort=("name", True))
    assert by_created == by_name_desc == ["/a.txt", "/b.txt", "/c.txt"]  # filename:asc
    store.options.sort = "honoured"
    assert listed(store, sort=("created_at", False)) == ["/b.txt", "/a.txt", "/c.txt"]
    assert listed(store, sort=("name", True)) == ["/c.txt", "/b.txt", "/a.txt"]
    store.options.page_drift = True  # newest first, whatever is asked
    for sort in (("name", False), ("created_at", False)):
        assert listed(store, sort=sort) == ["/c.txt", "/a.txt", "/b.txt"]


@pytest.mark.parametrize("rule", ["kept", "rewritten"])
def test_rename_info_name(rule: str) -> None:
    store = make_store(rename_info_name=rule)
    f = store.file(up(store, "/", "a.txt", b"a"))
    assert f is not None
    store.rename(f, "b.png")
    store.rename(f, "c.png")
    assert (f.name, f.client_name) == ("c.png", "c.png")  # what the client asked for, always
    if rule == "kept":
        assert (f.original_name, f.info_type) == ("a.txt", "text/plain")
    else:
        assert (f.original_name, f.info_type) == ("c.png", "image/png")
    # Same-name collisions of an upload still follow the stored name.
    assert up(store, "/", "a.txt", b"other") != f.uuid
    assert len(store.all_files()) == 2


def test_noop_conflict_on_rename_and_moves() -> None:
    store = make_store()
    a, b = (store.file(up(store, f"/{d}", f"{d}.txt", d.encode())) for d in "de")
    d, e = store.folder("/d"), store.folder("/e")
    assert a is not None
    assert b is not None
    assert d is not None
    assert e is not None
    for refused in (
        lambda: store.rename(a, "d.txt"),
        lambda: store.move([a], d),
        lambda: store.move([b, a], d),  # bulk: all or none, so b stays too
    ):
        with pytest.raises(EmulatorError) as caught:
            refused()
        assert (caught.value.status, caught.value.code) == (409, "E801_ALREADY_EXIST")
        assert caught.value.extra["existing_file_uuid"] == a.uuid
    assert (a.folder, b.folder, a.version) == (d, e, 1)
    mutations = store.mutations
    store.options.noop_conflict = False
    assert store.rename(a, "d.txt") is a
    assert store.move([b, a], d) == [b, a]
    assert (a.path, b.path) == ("/d/d.txt", "/d/e.txt")
    assert store.mutations > mutations


def test_listing_lag_shows_the_past_and_details_the_present() -> None:
    clock = FakeClock()
    store = make_store(clock, listing_lag_s=10.0, sort="honoured")
    a = up(store, "/d", "a.txt", b"a")
    d = store.folder("/d")
    assert d is not None
    assert listed(store) == []
    assert store.file(a) is not None  # details are live
    clock.now += 9.999
    assert listed(store, q="a") == []
    clock.now += 0.001
    assert listed(store) == listed(store, q="a") == ["/d/a.txt"]

    # A rename, a move, a new version and a delete each show once 10 s old, and the
    # listing keeps the state it had: a snapshot, not the live record.
    file_a = store.file(a)
    assert file_a is not None
    store.rename(file_a, "b.txt")
    before = store.list_files(store.root, recursive=True).files[0]
    assert (before.name, file_a.name) == ("a.txt", "b.txt")
    clock.now += 5
    store.move([file_a], store.ensure_folder("/e"))
    clock.now += 5
    assert listed(store) == ["/d/b.txt"]
    clock.now += 5
    assert listed(store) == ["/e/b.txt"]
    store.options.same_name = "version"
    up(store, "/e", "b.txt", b"version 2")
    assert store.list_files(store.root, recursive=True).files[0].sha1 == sha1(b"a")
    clock.now += 10
    assert store.list_files(store.root, recursive=True).files[0].sha1 == sha1(b"version 2")
    store.delete_files([a])
    assert listed(store) == ["/e/b.txt"]
    assert listed(store, updated_after_ms=0) == ["/e/b.txt"]
    clock.now += 10
    assert listed(store) == []


def test_listing_lag_counts_follow_the_same_view() -> None:
    clock = FakeClock()
    store = make_store(clock, listing_lag_s=1.0)
    up(store, "/p/q", "1.txt", b"12345")
    clock.now += 1
    up(store, "/p", "2.txt", b"123")
    p = store.folder("/p")
    q = store.folder("/p/q")
    assert p is not None
    assert q is not None
    listing = store.list_files(p)
    assert listing.files == []
    assert (listing.counts(p), listing.counts(q)) == (FolderCounts(1, 0, 5), FolderCounts(1, 1, 5))
    assert p.counts() == FolderCounts(2, 1, 8)  # the folders themselves are live
    clock.now += 1
    listing = store.list_files(p)
    assert [f.name for f in listing.files] == ["2.txt"]
    assert listing.counts(p) == FolderCounts(2, 1, 8)
    assert listing.counts(store.root).bytes_recursive == 8


def test_listing_lag_changed_at_runtime() -> None:
    clock = FakeClock()
    store = make_store(clock, sort="honoured")
    up(store, "/", "a.txt", b"a")
    listing = store.list_files(store.root)
    store.options.listing_lag_s = 10.0  # lagging starts from the project as it is now
    assert store.list_files(store.root) is not listing
    assert listed(store) == ["/a.txt"]
    up(store, "/", "b.txt", b"b")
    clock.now += 5
    up(store, "/", "c.txt", b"c")
    assert listed(store) == ["/a.txt"]
    store.options.listing_lag_s = 5.0  # a shorter lag applies to queued changes too
    assert listed(store) == ["/a.txt", "/b.txt"]
    store.options.listing_lag_s = 0.0  # live again, at once
    assert listed(store) == ["/a.txt", "/b.txt", "/c.txt"]
    store.options.listing_lag_s = 5.0
    store.clear()  # a reset is visible at once
    assert listed(store) == []


def test_options_of_undocumented_behaviour_validate() -> None:
    names: Any = ("FILE_RENAME", "FILE_RENAME", "DIR_DELETE")
    options = Options(denied_permissions=names)
    assert options.denied_permissions == ["FILE_RENAME", "DIR_DELETE"]
    assert json.loads(json.dumps(options.as_dict())) == options.as_dict()
    options.update({"listing-lag-s": 1, "q_match": "words", "page_drift": True})
    assert (options.listing_lag_s, options.q_match, options.page_drift) == (1.0, "words", True)
    bad_values = {
        "q_match": "fuzzy",
        "listing_lag_s": -1,
        "rename_info_name": "maybe",
        "updated_after": "minute",
        "sort": "asc",
        "page_drift": "yes",
        "listing_sha1": 0,
        "noop_conflict": None,
        "denied_permissions": "FILE_RENAME",
    }
    for key, value in bad_values.items():
        with pytest.raises(ValueError, match=key):
            options.update({key: value})
    for lag in (float("nan"), float("inf"), "1", True):
        with pytest.raises(ValueError, match="listing_lag_s"):
            options.update({"listing_lag_s": lag})
    with pytest.raises(ValueError, match=r"denied_permissions: unknown permission 'FILE_LIST'"):
        options.update({"denied_permissions": ["OBJECTS_LIST", "FILE_LIST"]})
    assert options.denied_permissions == ["FILE_RENAME", "DIR_DELETE"]


def test_permission_map() -> None:
    assert set(ROUTE_PERMISSIONS.values()) <= set(PERMISSIONS)
    refused = denied(["FILE_RENAME"], "PATCH", "/files/{uuid}")
    assert refused is not None
    assert (refused.status, refused.code) == (403, "PERMISSION_DENIED")
    assert "FILE_RENAME" in refused.msg
    assert denied(["FILE_RENAME"], "GET", "/files/{uuid}") is None
    assert denied([], "PATCH", "/files/{uuid}") is None


def test_token_bucket_burst_is_its_own_setting() -> None:
    clock = FakeClock()
    bucket = TokenBucket(clock)
    assert [bucket.take(30.0, 10.0) for _ in range(10)] == [0.0] * 10
    assert bucket.take(30.0, 10.0) == pytest.approx(1 / 30)  # empty: wait for a refill
    clock.now += 1.0  # a second refills 30 tokens, but the bucket holds 10
    assert sum(bucket.take(30.0, 10.0) == 0.0 for _ in range(12)) == 10


def test_latency_and_jitter_delay_each_request() -> None:
    faults = Faults(Options(slow_ms=100.0, jitter_ms=20.0, seed=3), random.Random(3))
    delays = [faults.delay_s() for _ in range(500)]
    assert all(0.08 <= d <= 0.12 for d in delays)
    assert max(delays) - min(delays) > 0.03  # spread, not a constant
    assert Faults(Options(), random.Random(3)).delay_s() == 0.0


@pytest.mark.parametrize(("scope", "second_key_refused"), [("project", True), ("key", False)])
def test_the_rate_limit_is_the_projects_or_each_keys(scope: str, second_key_refused: bool) -> None:
    now = [0.0]
    options = Options(rate_limit=1, rate_burst=1, rate_limit_scope=scope)  # type: ignore[arg-type]
    faults = Faults(options, random.Random(1), clock=lambda: now[0])
    assert faults.rate_limited("host-a") is None
    assert faults.rate_limited("host-a") is not None  # the bucket of one is spent
    assert (faults.rate_limited("host-b") is not None) is second_key_refused
