"""The DAM client against a hostile DAM (the emulator's `malice` modes, on loopback): every
answer costs at most one failed request, bounded in bytes and in time; a listing that does
not end stops with a `DamError`; a loop of pages gives the watchdog no progress; wrong
types never escape as anything but a `DamError`."""

from __future__ import annotations

import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC
from functools import partial

import aiohttp
import anyio
import pytest

import syncd.dam.client
import syncd.dam.listing
import syncd.dam.response
from syncd.dam.client import DamClient
from syncd.dam.limits import Backoff
from syncd.dam.pacer import Pacer
from syncd.dam.response import MIN_UPLOAD_RATE, upload_deadline, upload_timeout
from syncd.emulator import Emulator, Options, serve
from syncd.emulator.cli import build_parser
from syncd.errors import DamError, TransientDamError
from tests.conftest import KEY, TOKEN

ATTEMPTS = 3
FAST = Backoff(base_s=0.01, cap_s=0.05, max_attempts=ATTEMPTS)
LISTING = "GET /{token}/v4/files"


@asynccontextmanager
async def hostile(
    malice: str, *, timeout_s: float = 5.0
) -> AsyncIterator[tuple[Emulator, DamClient, list[float]]]:
    """An emulator in `malice` mode, a client of it, and the client's heartbeats."""
    beats: list[float] = []
    pacer = Pacer(4, backoff=FAST)
    pacer.heartbeat = lambda: beats.append(time.monotonic())
    async with (
        serve(token=TOKEN, key=KEY, malice=malice) as emu,
        DamClient(emu.url, TOKEN, KEY, pacer, timeout_s=timeout_s) as dam,
    ):
        yield emu, dam, beats


async def listing(dam: DamClient, folder: str = "/") -> list[str]:
    with anyio.fail_after(20):
        return [r.uuid async for r in dam.list_files(folder)]


# ---- bounded bodies ---------------------------------------------------------------------------


@pytest.mark.e2e
async def test_a_gzip_bomb_costs_one_capped_read_per_attempt():
    tracemalloc.start()
    try:
        async with hostile("gzip_bomb") as (emu, dam, _):
            t0 = time.monotonic()
            with pytest.raises(TransientDamError, match="larger than 16 MiB"):
                await listing(dam)
            took = time.monotonic() - t0
            _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert emu.stats.requests[LISTING] == ATTEMPTS
    # The bomb inflates to 1 GiB; each attempt holds at most the 16 MiB cap and the
    # chunk that crossed it.
    assert peak < 48 * 2**20, peak
    assert took < 10


async def test_a_body_past_the_cap_is_a_transient_error(emulator, monkeypatch):
    for i in range(30):
        emulator.store.upload("/c", f"f{i:02}.txt", sha1="ab" * 20, size=1, content=b"x")
    monkeypatch.setattr(syncd.dam.response, "MAX_BODY_BYTES", 4096)
    async with DamClient(emulator.url, TOKEN, KEY, Pacer(2, backoff=FAST)) as dam:
        with pytest.raises(TransientDamError, match="larger than"):
            await listing(dam, "/c")
        monkeypatch.setattr(syncd.dam.response, "MAX_BODY_BYTES", 16 * 2**20)
        assert len(await listing(dam, "/c")) == 30


# ---- pagination that does not end -------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("malice", "pages", "why"),
    [
        # New uuids forever, honest count (0): past the count plus one page of slack.
        ("endless_pages", 2, "far more than the 0 it reported"),
        # The same page again: the second adds nothing new.
        ("repeat_pages", 2, "adds none that was not listed before"),
        # New uuids forever and no count at all: MAX_LISTED (30 here).
        ("uncounted_pages", 5, "limit of 30 per listing"),
    ],
)
async def test_a_listing_that_does_not_end_stops(monkeypatch, malice, pages, why):
    monkeypatch.setattr(syncd.dam.client, "PAGE", 7)
    monkeypatch.setattr(syncd.dam.listing, "MAX_LISTED", 30)
    async with hostile(malice) as (emu, dam, beats):
        with pytest.raises(TransientDamError, match="listing does not end") as caught:
            await listing(dam)
        assert why in str(caught.value)
        assert emu.stats.requests[LISTING] == pages
        # Pages that added files beat, the one that broke the rule did not: a DAM
        # looping on its pages gives the watchdog no progress.
        assert len(beats) == pages - 1


async def test_an_honest_listing_beats_once_per_page(emulator, monkeypatch):
    monkeypatch.setattr(syncd.dam.client, "PAGE", 7)
    for i in range(20):
        emulator.store.upload("/p", f"f{i:02}.txt", sha1="ab" * 20, size=1, content=b"x")
    beats: list[int] = []
    pacer = Pacer(2, backoff=FAST)
    pacer.heartbeat = lambda: beats.append(1)
    async with DamClient(emulator.url, TOKEN, KEY, pacer) as dam:
        assert len(await listing(dam, "/p")) == 20
    assert len(beats) == 3  # 7 + 7 + 6


async def test_an_honest_listing_of_whole_pages_ends_with_an_empty_page(emulator, monkeypatch):
    """The rules that stop a runaway listing leave an honest one alone."""
    monkeypatch.setattr(syncd.dam.client, "PAGE", 5)
    for i in range(10):
        emulator.store.upload("/d", f"f{i:02}.txt", sha1="ab" * 20, size=1, content=b"x")
    async with DamClient(emulator.url, TOKEN, KEY, Pacer(2, backoff=FAST)) as dam:
        assert len(await listing(dam, "/d")) == 10  # two full pages, then an empty one


# ---- uploads with a deadline ------------------------------------------------------------------


def test_the_upload_deadline_grows_with_the_size():
    assert upload_deadline(None, 120) is None
    assert upload_deadline(0, 120) == 120
    assert upload_deadline(MIN_UPLOAD_RATE * 60, 120) == 180
    assert upload_deadline(2**30, 120) == pytest.approx(120 + 16384)
    timeout = upload_timeout(MIN_UPLOAD_RATE * 60, aiohttp.ClientTimeout(120, sock_connect=10))
    assert (timeout.total, timeout.sock_read, timeout.sock_connect) == (180, 120, 10)


@pytest.mark.e2e
@pytest.mark.parametrize("stream", [False, True])
async def test_a_trickled_upload_reply_fails_at_the_deadline(stream):
    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 100

    body = chunks if stream else lambda: b"x" * 100
    async with hostile("trickle", timeout_s=0.3) as (emu, dam, _):
        t0 = time.monotonic()
        with anyio.fail_after(20), pytest.raises(TransientDamError, match="TimeoutError"):
            await dam.upload("/t", "x.bin", body, stream=stream, size=100)
        took = time.monotonic() - t0
        assert emu.files() == []
    # The trickle keeps every read alive (a byte each 0.2 s, the read timeout is 0.3 s):
    # only the total deadline (0.3 s + 100 bytes at 64 KiB/s) ends each attempt.
    assert ATTEMPTS * 0.3 <= took < ATTEMPTS * 0.3 + 3


# ---- wrong types ------------------------------------------------------------------------------


@pytest.mark.e2e
async def test_wrong_types_are_dam_errors_for_that_request():
    outcomes: list[str] = []
    async with hostile("wrong_types") as (emu, dam, _):
        for i in range(36):
            try:
                with anyio.fail_after(10):
                    body = partial(bytes, b"%d" % i)
                    match i % 6:
                        case 0:
                            await dam.upload("/w", f"f{i}.txt", body, stream=i % 4 == 0)
                        case 1:
                            await listing(dam, "/w")
                        case 2:
                            await dam.count("/w")
                        case 3:
                            await dam.details("6f1d8c3e-2b7a-4c1e-9a5d-0e4b3c2a1f00")
                        case 4:
                            await dam.delete_many(["6f1d8c3e-2b7a-4c1e-9a5d-0e4b3c2a1f00"])
                        case _:
                            await dam.check_access()
                outcomes.append("ok")
            except DamError:
                outcomes.append("dam error")
        assert emu.stats.faults["wrong_types"] >= 36
    assert "dam error" in outcomes
    assert "ok" in outcomes


@pytest.mark.parametrize(
    ("header", "readable"),
    [
        ("Mon, 20 Nov 2026 19:12:08", True),  # no zone: HTTP dates are GMT
        ("Mon, 20 Nov 2026 19:12:08 GMT", True),
        ("garbage, 99 Foo 12345 99:99:99", False),
        ("Mon, 01 Jan 1900 00:00:00 GMT", False),
        ("Fri, 31 Dec 9999 23:59:59 GMT", False),
    ],
)
async def test_a_date_header_is_read_as_utc_or_ignored(emulator, header, readable):
    async with DamClient(emulator.url, TOKEN, KEY, Pacer(1)) as dam:
        dam._note_date(header)
        assert (dam.server_time is not None) == readable
        if dam.server_time is not None:
            assert dam.server_time.tzinfo == UTC
        assert dam.now().tzinfo is not None
        assert (dam.bookmark() is not None) == readable


# ---- the malicious emulator itself ------------------------------------------------------------


def test_malice_is_an_emulator_option_and_a_command_line_flag():
    text = build_parser().format_help()
    for mode in ("echo_key", "endless_pages", "repeat_pages", "gzip_bomb", "trickle"):
        assert mode in text
    assert build_parser().parse_args(["--malice", "wrong_types"]).malice == "wrong_types"
    assert build_parser().parse_args([]).malice == "off"
    with pytest.raises(ValueError, match="malice must be one of"):
        Options(malice="polite")  # type: ignore[arg-type]


async def test_the_gzip_bomb_is_small_on_the_wire_and_inflates_to_a_gib(emulator):
    emulator.configure({"malice": "gzip_bomb"})
    url = f"{emulator.api_url}/files?folder=/&limit=1000"
    wire = inflated = 0
    async with aiohttp.ClientSession(headers={"X-Filerobot-Key": KEY}) as http:
        with anyio.fail_after(60):
            async with http.get(url, auto_decompress=False) as response:
                assert response.headers["Content-Encoding"] == "gzip"
                z = zlib.decompressobj(31)
                async for chunk in response.content.iter_chunked(2**16):
                    wire += len(chunk)
                    while chunk:  # inflate in bounded steps, as a careful client would
                        inflated += len(z.decompress(chunk, 2**20))
                        chunk = z.unconsumed_tail
                assert z.eof  # CRC and length check out
    assert wire < 2 * 2**20
    assert inflated > 2**30
