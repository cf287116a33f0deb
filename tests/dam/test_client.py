"""Tests of syncd.dam.client: the DAM client over real HTTP against the emulator on loopback, with a
real `Pacer` (short backoff so retries are quick)."""

from __future__ import annotations

import hashlib
import math
import re
import shutil
import signal
import ssl
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import anyio
import pytest

import syncd.dam.client
import syncd.dam.ops
from syncd.dam.client import Body, DamClient, Uploaded
from syncd.dam.limits import Backoff
from syncd.dam.pacer import Pacer
from syncd.emulator import Emulator, serve
from syncd.errors import (
    AuthError,
    ConfigError,
    NameConflict,
    PermanentDamError,
    TransientDamError,
)
from syncd.model import RemoteFile
from tests.conftest import (
    KEY,
    NAMES,
    TOKEN,
    dam_tree,
    emulator_command,
    run_syncd,
    write,
    write_config,
)

REPO = Path(__file__).resolve().parents[2]
FAST = Backoff(base_s=0.01, cap_s=0.05, max_attempts=6)
FILES = "/{token}/v4/files"
FILE = "/{token}/v4/files/{uuid}"


def sha1(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def requests(emu: Emulator, method: str, route: str = FILES) -> int:
    return emu.stats.requests[f"{method} {route}"]


def total_requests(emu: Emulator) -> int:
    return sum(emu.stats.requests.values())


@pytest.fixture
def pacer() -> Pacer:
    return Pacer(4, backoff=FAST)


@pytest.fixture
async def dam(emulator: Emulator, pacer: Pacer) -> AsyncIterator[DamClient]:
    async with DamClient(emulator.url, TOKEN, KEY, pacer, workers=4) as client:
        yield client


async def chunks(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def body_of(data: bytes, stream: bool) -> Callable[[], Body]:
    if stream:
        return lambda: chunks(data)
    return lambda: data


async def upload(
    dam: DamClient, folder: str, name: str, data: bytes, *, stream: bool = False
) -> Uploaded:
    with anyio.fail_after(10):
        return await dam.upload(folder, name, body_of(data, stream), stream=stream)


async def listing(dam: DamClient, folder: str, **kw: object) -> list[RemoteFile]:
    with anyio.fail_after(10):
        return [r async for r in dam.list_files(folder, **kw)]  # type: ignore[arg-type]


# ---- access -------------------------------------------------------------------------------


async def test_check_access_ok(emulator, dam):
    with anyio.fail_after(10):
        await dam.check_access()
    assert requests(emulator, "GET") == 1
    assert dam.requests == 1


async def test_check_access_with_a_wrong_key_is_an_auth_error(emulator, pacer):
    with anyio.fail_after(10):
        async with DamClient(emulator.url, TOKEN, "not-the-key", pacer) as dam:
            with pytest.raises(AuthError) as caught:
                await dam.check_access()
    assert caught.value.status == 401
    assert caught.value.code == "UNAUTHORIZED"
    assert total_requests(emulator) == 1  # not retried


async def test_revoked_key_fails_fast_without_a_retry_storm(emulator, dam):
    emulator.revoke_key()
    t0 = time.monotonic()
    with anyio.fail_after(10):
        with pytest.raises(AuthError) as caught:
            await dam.check_access()
        with pytest.raises(AuthError):
            await dam.upload("/a", "x.txt", lambda: b"x", stream=False)
        with pytest.raises(AuthError):
            await dam.upload("/a", "y.txt", lambda: chunks(b"y"), stream=True)
        with pytest.raises(AuthError):
            await dam.delete_many(["u1", "u2"])
    assert caught.value.code == "KEY_EXPIRED"
    assert time.monotonic() - t0 < 2.0
    assert total_requests(emulator) == 4  # one request each
    assert emulator.files() == []


async def test_bookmark_follows_the_dams_clock(emulator, dam):
    assert dam.bookmark() is None
    with anyio.fail_after(10):
        await dam.check_access()
    shown = dam.bookmark()
    assert shown is not None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", shown)
    when = datetime.fromisoformat(shown)
    assert abs(when.timestamp() - time.time()) < 5
    # After an upload the bookmark is at least the asset's own modified_at (ms precision),
    # so the next updated_after listing does not return it.
    with anyio.fail_after(10):
        up = await dam.upload("/b", "x.jpg", lambda: b"x", stream=False)
    after = datetime.fromisoformat(dam.bookmark() or "")
    assert up.modified_at is not None
    assert after >= up.modified_at
    with anyio.fail_after(10):
        since = [r async for r in dam.list_files("/b", updated_after=dam.bookmark())]
    assert since == []


# ---- uploads ------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True], ids=["multipart", "put"])
async def test_upload_returns_uuid_and_sha1(emulator, dam, stream):
    data = b"hello DAM\n" * 500
    up = await upload(dam, "/a/b", "hello.txt", data, stream=stream)
    (rec,) = emulator.files()
    assert up == Uploaded(
        uuid=rec.uuid,
        name="hello.txt",
        remote_sha1=sha1(data),
        modified_at=datetime.fromisoformat(rec.modified_at),
    )
    assert rec.folder == "/a/b"
    assert rec.original_name == "hello.txt"
    assert rec.sha1 == sha1(data)
    assert rec.size == len(data)
    method = "PUT" if stream else "POST"
    assert requests(emulator, method) == 1
    assert emulator.stats.uploads_committed == 1


@pytest.mark.parametrize("stream", [False, True], ids=["multipart", "put"])
async def test_awkward_names_round_trip(emulator, dam, stream):
    folder = "/odd #1/a & b+c"
    for i, name in enumerate(NAMES):
        up = await upload(dam, folder, name, f"{i}:{name}".encode(), stream=stream)
        assert up.name == name
    stored = {r.original_name: r for r in emulator.files()}
    assert sorted(stored) == sorted(NAMES)
    assert {r.folder for r in stored.values()} == {folder}
    for i, name in enumerate(NAMES):
        assert stored[name].sha1 == sha1(f"{i}:{name}".encode())
    listed = await listing(dam, folder)
    assert sorted(r.path for r in listed) == sorted(NAMES)
    assert {r.folder for r in listed} == {folder}
    with anyio.fail_after(10):
        assert await dam.count(folder) == len(NAMES)


async def test_same_content_and_name_is_adopted_with_409(emulator, dam):
    first = await upload(dam, "/a", "x.txt", b"same")
    again = await upload(dam, "/a", "x.txt", b"same", stream=True)
    assert again == Uploaded(uuid=first.uuid, name="", remote_sha1=None, adopted=True)
    assert emulator.stats.uploads_committed == 1
    assert emulator.stats.statuses[409] == 1
    assert requests(emulator, "POST") + requests(emulator, "PUT") == 2  # not retried


async def test_same_content_and_name_is_adopted_with_200(emulator, dam):
    emulator.configure({"same_asset_status": 200})
    first = await upload(dam, "/a", "x.txt", b"same")
    again = await upload(dam, "/a", "x.txt", b"same")
    assert again.adopted
    assert again.uuid == first.uuid
    assert emulator.stats.uploads_committed == 1
    assert requests(emulator, "POST") == 2  # a 200 with "status":"error" is not retried here


async def test_sha1_conflict_names_where_the_identical_asset_lives(emulator, dam):
    emulator.configure({"duplicates": "refuse"})
    first = await upload(dam, "/a", "one.txt", b"content")
    other = await upload(dam, "/b", "two.txt", b"content")
    assert other.adopted
    assert other.uuid == first.uuid
    # The caller must know the asset is not at /b/two.txt, so it never deletes it.
    assert other.elsewhere == "/a/one.txt"
    assert [r.client_path for r in emulator.files()] == ["/a/one.txt"]
    same = await upload(dam, "/a", "one.txt", b"content")
    assert same.adopted
    assert same.elsewhere is None  # same folder and name: that asset is this file's


async def test_same_name_refused_is_a_name_conflict(emulator, dam):
    emulator.configure({"same_name": "refuse"})
    await upload(dam, "/a", "x.txt", b"old")
    with pytest.raises(NameConflict):
        await upload(dam, "/a", "x.txt", b"new")
    assert requests(emulator, "POST") == 2  # a conflict is not retried


async def test_suffix_naming_keeps_the_sent_name_as_a_hint(emulator, dam):
    emulator.configure({"naming": "suffix"})
    up = await upload(dam, "/s", "photo.jpg", b"jpeg")
    assert re.fullmatch(r"photo-[A-Za-z0-9]{8}\.jpg", up.name)
    (r,) = await listing(dam, "/s")
    # The path is folder + stored name; info.name is the name sent at upload.
    assert (r.path, r.name, r.info_name, r.uuid) == (up.name, up.name, "photo.jpg", up.uuid)


# ---- listing ------------------------------------------------------------------------------


@pytest.mark.parametrize(("n", "pages"), [(20, 3), (21, 4), (6, 1)])
async def test_list_files_pages_until_a_short_page(emulator, dam, monkeypatch, n, pages):
    monkeypatch.setattr(syncd.dam.client, "PAGE", 7)
    uuids = {(await upload(dam, "/p", f"f{i:02d}.txt", f"{i}".encode())).uuid for i in range(n)}
    before = requests(emulator, "GET")
    listed = await listing(dam, "/p")
    assert requests(emulator, "GET") - before == pages
    assert pages == math.ceil(n / 7) + (n % 7 == 0)
    assert len(listed) == n
    assert {r.uuid for r in listed} == uuids
    assert sorted(r.path for r in listed) == [f"f{i:02d}.txt" for i in range(n)]


async def test_list_files_recursive_or_not(dam):
    await upload(dam, "/r", "top.txt", b"1")
    await upload(dam, "/r/sub", "mid.txt", b"2")
    await upload(dam, "/r/sub/deep", "low.txt", b"3")
    await upload(dam, "/other", "no.txt", b"4")
    recursive = await listing(dam, "/r")
    assert sorted(r.path for r in recursive) == ["sub/deep/low.txt", "sub/mid.txt", "top.txt"]
    assert {r.path: r.folder for r in recursive}["sub/deep/low.txt"] == "/r/sub/deep"
    flat = await listing(dam, "/r", recursive=False)
    assert [r.path for r in flat] == ["top.txt"]
    below = await listing(dam, "/r/sub")
    assert sorted(r.path for r in below) == ["deep/low.txt", "mid.txt"]
    everything = await listing(dam, "/")
    assert sorted(r.path for r in everything) == [
        "other/no.txt",
        "r/sub/deep/low.txt",
        "r/sub/mid.txt",
        "r/top.txt",
    ]


async def test_list_files_of_a_missing_folder_is_empty(emulator, dam):
    assert await listing(dam, "/nowhere") == []
    assert requests(emulator, "GET") == 1


async def test_list_files_updated_after(emulator, dam):
    # The client passes the parameter through; how precisely a DAM compares it is a
    # variant of its own (docs/dam-api.md §12.21), exercised end to end elsewhere.
    emulator.configure({"updated_after": "exact"})
    await upload(dam, "/u", "old.txt", b"old")
    (old,) = emulator.files()
    await anyio.sleep(0.01)  # the emulator's clock has millisecond resolution
    await upload(dam, "/u", "new.txt", b"new")
    later = await listing(dam, "/u", updated_after=old.modified_at)
    assert [r.path for r in later] == ["new.txt"]
    assert len(await listing(dam, "/u", updated_after="2000-01-01T00:00:00Z")) == 2
    assert await listing(dam, "/u", updated_after="2100-01-01T00:00:00Z") == []


async def test_list_files_q(dam):
    await upload(dam, "/q", "cat & dog.jpg", b"1")
    await upload(dam, "/q", "dog.jpg", b"2")
    await upload(dam, "/q/sub", "cat.png", b"3")
    found = await listing(dam, "/q", q="cat")
    assert sorted(r.path for r in found) == ["cat & dog.jpg", "sub/cat.png"]
    assert [r.path for r in await listing(dam, "/q", q="cat & dog", recursive=False)] == [
        "cat & dog.jpg"
    ]


@pytest.mark.parametrize("option", ["size_as_int", "folder_trailing_slash", None], ids=str)
async def test_list_files_accepts_every_shape(emulator, dam, option):
    if option:
        emulator.configure({option: True})
    data = b"x" * 1234
    up = await upload(dam, "/shape/a", "f.bin", data)
    await upload(dam, "/shape", "top.bin", b"y")
    listed = {r.path: r for r in await listing(dam, "/shape")}
    assert set(listed) == {"a/f.bin", "top.bin"}
    got = listed["a/f.bin"]
    assert got == RemoteFile(
        uuid=up.uuid,
        path="a/f.bin",
        name="f.bin",
        folder="/shape/a",
        sha1=sha1(data),
        size=1234,
        info_name="f.bin",
        created_at=got.created_at,
        modified_at=got.modified_at,
    )
    assert got.created_at is not None
    assert got.modified_at is not None
    assert listed["top.bin"].folder == "/shape"


async def test_count(dam):
    for i in range(3):
        await upload(dam, "/c", f"{i}.txt", f"{i}".encode())
    await upload(dam, "/c/sub", "s.txt", b"s")
    with anyio.fail_after(10):
        assert await dam.count("/c") == 4
        assert await dam.count("/c/sub") == 1
        assert await dam.count("/") == 4
        assert await dam.count("/missing") == 0


# ---- deletes and renames ------------------------------------------------------------------


async def test_delete_and_delete_again(emulator, dam):
    up = await upload(dam, "/d", "x.txt", b"x")
    with anyio.fail_after(10):
        await dam.delete(up.uuid)
        assert emulator.files() == []
        await dam.delete(up.uuid)  # already gone: the goal is reached
    assert requests(emulator, "DELETE", FILE) == 2  # the 404 is not retried


async def test_delete_many_in_bulk_chunks(emulator, dam, monkeypatch):
    monkeypatch.setattr(syncd.dam.ops, "BULK", 3)
    uuids = [(await upload(dam, "/d", f"{i}.txt", f"{i}".encode())).uuid for i in range(7)]
    keep = await upload(dam, "/d", "keep.txt", b"keep")
    with anyio.fail_after(10):
        await dam.delete_many([*uuids, "no-such-uuid"])
        await dam.delete_many([])
    assert [r.uuid for r in emulator.files()] == [keep.uuid]
    assert requests(emulator, "DELETE") == 3  # ceil(8 / 3); none for the empty list


async def test_rename_keeps_the_uuid(emulator, dam):
    up = await upload(dam, "/n", "before.txt", b"x")
    with anyio.fail_after(10):
        await dam.rename(up.uuid, "after & #1.txt")
    (rec,) = emulator.files()
    assert (rec.uuid, rec.name, rec.client_name) == (up.uuid, "after & #1.txt", "after & #1.txt")
    (r,) = await listing(dam, "/n")
    assert r.path == "after & #1.txt"


async def test_rename_onto_a_taken_name_is_a_name_conflict(dam):
    a = await upload(dam, "/n", "a.txt", b"a")
    await upload(dam, "/n", "b.txt", b"b")
    with anyio.fail_after(10), pytest.raises(NameConflict):
        await dam.rename(a.uuid, "b.txt")


# ---- failures and retries -----------------------------------------------------------------


async def test_error_bodies_are_retried(emulator, dam):
    """A 200 whose body says "status":"error" is a transient failure: retried, then done."""

    async def flip_after_first_sleep(seconds: float) -> None:
        emulator.configure({"error_body_rate": 0.0})
        await anyio.sleep(seconds)

    dam.pacer = Pacer(4, backoff=FAST, sleep=flip_after_first_sleep)
    emulator.configure({"error_body_rate": 1.0})
    up = await upload(dam, "/e", "x.txt", b"x")
    assert emulator.stats.faults["error_body"] == 1
    assert requests(emulator, "POST") == 2
    assert [r.uuid for r in emulator.files()] == [up.uuid]


async def test_random_server_errors_are_retried(emulator, dam):
    emulator.configure({"error_rate": 0.3, "seed": 3})
    ups = [await upload(dam, "/e", f"{i}.txt", f"{i}".encode()) for i in range(10)]
    with anyio.fail_after(10):
        assert await dam.count("/e") == 10
    assert emulator.stats.faults["server_error"] > 0
    assert {r.uuid for r in emulator.files()} == {u.uuid for u in ups}


async def test_errors_that_never_stop_are_raised_after_max_attempts(emulator, dam):
    emulator.configure({"error_rate": 1.0})
    with anyio.fail_after(10), pytest.raises(TransientDamError) as caught:
        await dam.count("/x")
    assert caught.value.status in (500, 502, 503)
    assert requests(emulator, "GET") == FAST.max_attempts


async def test_unreachable_dam_is_a_transient_error(pacer):
    with anyio.fail_after(10):
        async with DamClient("http://127.0.0.1:1", TOKEN, KEY, pacer) as dam:
            with pytest.raises(TransientDamError):
                await dam.check_access()
            assert dam.requests == FAST.max_attempts


async def test_a_dam_slower_than_the_timeout_is_a_transient_error(emulator, pacer):
    emulator.configure({"slow_ms": 150})
    with anyio.fail_after(10):
        async with DamClient(emulator.url, TOKEN, KEY, pacer, timeout_s=0.03) as dam:
            with pytest.raises(TransientDamError, match="TimeoutError"):
                await dam.count("/")
            # Counted on the client: the server may not have logged the last attempt yet.
            assert dam.requests == FAST.max_attempts
            with pytest.raises(TransientDamError):
                await dam.upload("/t", "x.txt", lambda: b"x", stream=True)


@pytest.mark.parametrize("style", ["seconds", "date"])
async def test_rate_limit_is_honoured(emulator, dam, style):
    emulator.configure({"rate_limit": 1, "retry_after_style": style})
    t0 = time.monotonic()
    with anyio.fail_after(10):
        await dam.check_access()  # the bucket's one token
        assert await dam.count("/") == 0  # 429, Retry-After, then success
    assert dam.pacer.rate_limited == 1
    assert emulator.stats.rate_limited == 1
    assert time.monotonic() - t0 >= 0.9  # it waited for Retry-After rather than hammering
    assert requests(emulator, "GET") == 3


def flip_off(emulator: Emulator, option: str) -> Pacer:
    """A pacer whose first retry sleep turns `option` off, so exactly one attempt fails."""

    async def sleep(seconds: float) -> None:
        emulator.configure({option: 0.0})
        await anyio.sleep(seconds)

    return Pacer(4, backoff=FAST, sleep=sleep)


@pytest.mark.parametrize(
    ("stream", "chunked"),
    [(False, False), (True, False), (True, True)],
    ids=["multipart", "put-bytes", "put-chunks"],
)
async def test_reset_after_commit_does_not_make_a_second_asset(emulator, dam, stream, chunked):
    dam.pacer = flip_off(emulator, "reset_after_commit_rate")
    with anyio.fail_after(10):
        await dam.check_access()  # a kept-alive connection for the upload to reuse
    emulator.configure({"reset_after_commit_rate": 1.0})
    data = b"committed once" * 100

    def body() -> Body:
        return chunks(data) if chunked else data

    with anyio.fail_after(10):
        up = await dam.upload("/r", "x.bin", body, stream=stream)
    assert emulator.stats.faults["reset_after_commit"] == 1
    # The retry met the committed asset (same name, same content) and adopted it; aiohttp
    # did not resend the request on its own behind the pacer's back.
    assert up.adopted
    (rec,) = emulator.files()
    assert (rec.uuid, rec.sha1, rec.size) == (up.uuid, sha1(data), len(data))
    assert emulator.stats.uploads_committed == 1
    assert requests(emulator, "PUT" if stream else "POST") == 2
    assert dam.requests == total_requests(emulator)  # every resend went through the pacer


async def test_before_retry_can_settle_an_upload_of_unknown_outcome(emulator, dam):
    dam.pacer = flip_off(emulator, "reset_after_commit_rate")
    emulator.configure({"reset_after_commit_rate": 1.0})
    looked: list[int] = []

    async def look_first() -> Uploaded | None:
        looked.append(1)
        (rec,) = emulator.files()
        return Uploaded(uuid=rec.uuid, name=rec.name, remote_sha1=rec.sha1)

    with anyio.fail_after(10):
        up = await dam.upload("/r", "x.txt", lambda: b"x", stream=False, before_retry=look_first)
    assert looked == [1]
    assert up == Uploaded(uuid=emulator.files()[0].uuid, name="x.txt", remote_sha1=sha1(b"x"))
    assert requests(emulator, "POST") == 1  # found, so not sent again


async def test_reset_before_commit_is_retried(emulator, dam):
    dam.pacer = flip_off(emulator, "reset_before_commit_rate")
    emulator.configure({"reset_before_commit_rate": 1.0})
    up = await upload(dam, "/r", "x.txt", b"x", stream=True)
    assert not up.adopted
    assert emulator.stats.faults["reset_before_commit"] == 1
    assert [r.uuid for r in emulator.files()] == [up.uuid]


# ---- TLS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Certs:
    """A test CA, a server certificate it signed for 127.0.0.1, and an unrelated CA."""

    ca: Path
    cert: Path
    key: Path
    other_ca: Path


def openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    d = tmp_path_factory.mktemp("tls")
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    ca = ["-days", "2", "-addext", "basicConstraints=critical,CA:TRUE"]
    ca += ["-addext", "keyUsage=critical,keyCertSign"]
    for name in ("ca", "other_ca"):
        out = ("-keyout", d / f"{name}.key", "-out", d / f"{name}.pem")
        openssl("req", "-x509", *key, *ca, "-subj", f"/CN=syncd test {name}", *out)
    # The address goes in subjectAltName (the CN is not looked at); the key identifiers are
    # what the strict X.509 checks of newer Pythons' default context ask for.
    ext = write(
        d / "server.ext",
        "subjectAltName = IP:127.0.0.1\n"
        "basicConstraints = critical, CA:FALSE\n"
        "keyUsage = critical, digitalSignature\n"
        "extendedKeyUsage = serverAuth\n"
        "subjectKeyIdentifier = hash\n"
        "authorityKeyIdentifier = keyid\n",
    )
    csr = d / "server.csr"
    openssl("req", "-new", *key, "-subj", "/CN=127.0.0.1", "-keyout", d / "server.key", "-out", csr)
    signer = ("-CA", d / "ca.pem", "-CAkey", d / "ca.key", "-set_serial", "2", "-days", "2")
    openssl("x509", "-req", "-in", csr, *signer, "-extfile", ext, "-out", d / "server.pem")
    return Certs(d / "ca.pem", d / "server.pem", d / "server.key", d / "other_ca.pem")


@pytest.fixture
async def tls_emulator(certs: Certs) -> AsyncIterator[Emulator]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certs.cert, certs.key)
    async with serve(token=TOKEN, key=KEY, seed=1, ssl_context=context) as emu:
        yield emu


@pytest.mark.e2e
async def test_an_unknown_ca_fails_fast_with_a_clear_error(tls_emulator, pacer):
    assert tls_emulator.url.startswith("https://127.0.0.1:")
    port = tls_emulator.url.rpartition(":")[2]
    t0 = time.monotonic()
    with anyio.fail_after(10):
        async with DamClient(tls_emulator.url, TOKEN, KEY, pacer) as dam:
            with pytest.raises(ConfigError) as caught:
                await dam.check_access()
            with pytest.raises(PermanentDamError) as upload_failed:
                await dam.upload("/a", "x.txt", lambda: b"x", stream=False)
    message = str(caught.value)
    assert message.startswith(f"dam.base_url: the TLS certificate of 127.0.0.1:{port} could")
    assert "could not be verified (unable to get local issuer certificate)" in message
    assert "set dam.ca_bundle to that CA's certificate" in message
    assert caught.value.__suppress_context__
    assert str(upload_failed.value).startswith("upload /a/x.txt: dam.base_url: the TLS cert")
    # Not retried (max_attempts is 6): one connection attempt each, and no request arrived.
    assert dam.requests == 2
    assert time.monotonic() - t0 < 2.0
    assert total_requests(tls_emulator) == 0
    assert tls_emulator.files() == []


@pytest.mark.e2e
async def test_ca_bundle_makes_https_work(tls_emulator, pacer, certs):
    with anyio.fail_after(10):
        async with DamClient(tls_emulator.url, TOKEN, KEY, pacer, ca_bundle=certs.ca) as dam:
            await dam.check_access()
            small = await upload(dam, "/tls", "small.txt", b"small")
            big = await upload(dam, "/tls", "big.bin", b"b" * 100_000, stream=True)
            listed = await listing(dam, "/tls")
    assert {r.uuid for r in listed} == {small.uuid, big.uuid}
    assert dam.requests == 4
    assert requests(tls_emulator, "GET") == 2
    assert {f.path: f.sha1 for f in tls_emulator.files()} == {
        "/tls/small.txt": sha1(b"small"),
        "/tls/big.bin": sha1(b"b" * 100_000),
    }


@pytest.mark.e2e
async def test_a_ca_bundle_without_the_signing_ca_names_the_bundle(tls_emulator, pacer, certs):
    bundle = certs.other_ca
    with anyio.fail_after(10):
        async with DamClient(tls_emulator.url, TOKEN, KEY, pacer, ca_bundle=bundle) as dam:
            with pytest.raises(ConfigError) as caught:
                await dam.check_access()
    assert str(caught.value).startswith("dam.ca_bundle: the TLS certificate of 127.0.0.1:")
    assert f"even with the CAs in {bundle}; add the CA that signed it" in str(caught.value)
    assert dam.requests == 1


async def test_ca_bundle_that_is_no_longer_a_certificate_is_a_config_error(tmp_path, pacer):
    # Checked when the config is loaded; this is the file changing before the client starts.
    bundle = write(tmp_path / "ca.pem", "not a certificate")
    client = DamClient("https://127.0.0.1:9", TOKEN, KEY, pacer, ca_bundle=bundle)
    with pytest.raises(ConfigError, match=r"^dam\.ca_bundle: cannot load .*ca\.pem"):
        async with client:
            pass


@pytest.mark.e2e
@pytest.mark.parametrize("with_bundle", [False, True], ids=["no-bundle", "bundle"])
async def test_syncd_over_https(tmp_path, tls_emulator, certs, with_bundle):
    """The whole command: config key, `make_dam`, and the exit code for a certificate error."""
    root = tmp_path / "src"
    write(root / "a.txt", "a")
    dam = {"ca_bundle": str(certs.ca)} if with_bundle else {}
    folders = [{"local": str(root), "remote": "/https"}]
    cfg = write_config(tmp_path / "c.toml", tls_emulator, folders, dam=dam)
    run = await run_syncd("--config", cfg, "--initial-sync")
    if with_bundle:
        assert run.code == 0, run.stderr
        assert dam_tree(tls_emulator, "/https") == {"a.txt": sha1(b"a")}
        return
    assert run.code == 78  # EX_CONFIG: systemd does not restart-loop on it
    assert run.stderr.startswith(f"syncd: configuration error: {cfg}: dam.base_url: the TLS")
    assert "dam.ca_bundle" in run.stderr
    assert "Traceback" not in run.stderr
    assert total_requests(tls_emulator) == 0


@pytest.mark.e2e
async def test_emulator_command_serves_https(certs, pacer):
    tls = ("--tls-cert", str(certs.cert), "--tls-key", str(certs.key))
    async with emulator_command("--token", TOKEN, "--key", KEY, *tls) as (process, line):
        match = re.fullmatch(r"emulator listening on (https://127\.0\.0\.1:\d+) \S+\n", line)
        assert match, line
        with anyio.fail_after(10):
            async with DamClient(match[1], TOKEN, KEY, pacer, ca_bundle=certs.ca) as dam:
                await dam.check_access()
        process.send_signal(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await process.wait() == 0
