"""syncd's DAM session never resends a request on its own: aiohttp resends an idempotent
request (a streaming upload's PUT too) once when the connection drops, which could create
a second asset behind the pacer's back. The check runs against a real socket server that
reads the request in full and then drops the connection without an answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import anyio
import pytest

from syncd.dam.client import DamClient
from syncd.dam.pacer import Pacer

pytestmark = pytest.mark.unit


@asynccontextmanager
async def dropping_server() -> AsyncIterator[tuple[str, list[str]]]:
    """A server that reads each request (headers and body) and hangs up unanswered."""
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next(
            (int(h.split(":", 1)[1]) for h in lines if h.lower().startswith("content-length:")),
            0,
        )
        await reader.readexactly(length)
        seen.append(lines[0])
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        server.close()
        await server.wait_closed()


async def test_a_put_whose_connection_drops_is_sent_once():
    async with dropping_server() as (url, seen), DamClient(url, "t", "k", Pacer(2)) as dam:
        session = dam._session
        assert session is not None
        with anyio.fail_after(10), pytest.raises(aiohttp.ClientError):
            await session.put(f"{url}/t/v4/files", data=b"x" * 4096)
    assert seen == ["PUT /t/v4/files HTTP/1.1"]


async def test_the_check_can_fail_a_plain_aiohttp_session_resends():
    # The same server and request through aiohttp's defaults: two sends. Without this,
    # the test above could pass for a reason that has nothing to do with syncd.
    async with dropping_server() as (url, seen), aiohttp.ClientSession() as session:
        with anyio.fail_after(10), pytest.raises(aiohttp.ClientError):
            await session.put(f"{url}/t/v4/files", data=b"x" * 4096)
    assert seen == ["PUT /t/v4/files HTTP/1.1"] * 2
