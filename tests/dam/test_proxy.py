"""The API key never crosses a proxy and never goes to another host (`syncd.dam.client`).

Checked against a real logging proxy: squid on loopback, started by these tests with a
private config, which logs every request it handles, CONNECT included, with all of its
request headers. Its log lines come to the tests over a loopback UDP socket (squid's own
files would belong to the unprivileged user it switches to when started as root).

aiohttp copies a session's default headers into the headers it sends a proxy (the CONNECT
of an https request included), so the key must not be one of them; and a plain-http request
reaches a proxy whole, so an http DAM (loopback only) must not use a proxy at all.

squid missing skips these tests, except under CI (`$CI` set), where it fails them: `.ci/run`
installs it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import anyio
import pytest
import yarl

from syncd.dam.client import DamClient
from syncd.dam.limits import Backoff
from syncd.dam.pacer import Pacer
from syncd.dam.proxy import env_proxy
from syncd.emulator import Emulator
from tests.conftest import KEY, TOKEN, dam_tree, run_syncd, write, write_config
from tests.dam import test_client as test_dam

# Real squid and a real emulator on loopback.
pytestmark = pytest.mark.e2e

# test_dam's test CA and HTTPS emulator, as fixtures of this module too (bound by assignment:
# pytest registers them under these names, and a test's parameter of the same name is meant).
certs = test_dam.certs
tls_emulator = test_dam.tls_emulator

# One line per request: method, URL (host:port for a CONNECT), status, request headers.
SQUID_CONF = """\
http_port 127.0.0.1:{port}
http_access allow all
cache deny all
cache_mem 0
pid_filename none
coredump_dir none
cache_log /dev/null
cache_store_log none
netdb_filename none
pinger_enable off
dns_nameservers 127.0.0.1
shutdown_lifetime 0 seconds
logformat headers %rm %ru %>Hs [%>h]
access_log udp://127.0.0.1:{log_port} logformat=headers buffer-size=0KB
"""


@dataclass
class Squid:
    """A running squid: where it listens, and the socket its log lines arrive on."""

    url: str
    port: int
    log: socket.socket
    refused: int  # a loopback port where nothing listens: squid's requests to it fail fast

    async def send(self, head: str) -> None:
        """Send squid one raw request (`head` without the blank line) and read its answer."""
        with anyio.fail_after(10):
            async with await anyio.connect_tcp("127.0.0.1", self.port) as stream:
                await stream.send(f"{head}\r\nConnection: close\r\n\r\n".encode())
                with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError):
                    while await stream.receive():
                        pass

    async def seen(self) -> list[str]:
        """The lines squid logged since the last call: a marked request of our own goes
        last, and the log is read up to its line."""
        marker = f"/syncd-test-end-{secrets.token_hex(8)}"
        target = f"127.0.0.1:{self.refused}"
        await self.send(f"GET http://{target}{marker} HTTP/1.1\r\nHost: {target}")
        lines: list[str] = []
        with anyio.fail_after(10):
            while True:
                await anyio.wait_readable(self.log)
                line = self.log.recv(65536).decode("utf-8", "replace").rstrip("\n")
                if marker in line:
                    return lines
                lines.append(line)


def squid_binary() -> str:
    """squid's path; skip without it, unless under CI."""
    found = shutil.which("squid") or shutil.which("squid", path="/usr/sbin:/sbin")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(
                "squid is not installed, and CI must check that the key never crosses a proxy"
            )
        pytest.skip("squid is not installed")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def squid_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Squid]:
    binary = squid_binary()
    d = tmp_path_factory.mktemp("squid")
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as log,
        socket.socket() as refused,  # bound, never listening
        (d / "squid.err").open("wb") as err,
    ):
        log.bind(("127.0.0.1", 0))
        log.setblocking(False)
        refused.bind(("127.0.0.1", 0))
        port = _free_port()
        conf = write(d / "squid.conf", SQUID_CONF.format(port=port, log_port=log.getsockname()[1]))
        # -N: no daemon, one process; -d 1: its start-up messages go to stderr.
        proc = subprocess.Popen([binary, "-N", "-d", "1", "-f", str(conf)], stderr=err)
        try:
            _wait_listening(proc, port, d / "squid.err")
            yield Squid(f"http://127.0.0.1:{port}", port, log, refused.getsockname()[1])
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, err: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"squid exited ({proc.returncode}):\n{err.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    pytest.fail(f"squid did not listen within 15 s:\n{err.read_text()[-2000:]}")


@pytest.fixture
async def squid(squid_process: Squid) -> Squid:
    await squid_process.seen()  # what earlier tests (or the readiness check) left behind
    return squid_process


@pytest.fixture
def pacer() -> Pacer:
    return Pacer(4, backoff=Backoff(base_s=0.01, cap_s=0.05, max_attempts=3))


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy settings from the environment the tests run in (lower-case ones win)."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    return monkeypatch


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """The connections the DamClients of a test open (through a proxy, one CONNECT each).

    squid logs a CONNECT when its tunnel closes, which can come a little after the client
    has closed its session (the TLS shutdown goes first): a test waits for as many lines.
    """
    opened: list[object] = []

    async def on_create(_: aiohttp.ClientSession, __: SimpleNamespace, params: object) -> None:
        opened.append(params)

    trace = aiohttp.TraceConfig()
    trace.on_connection_create_end.append(on_create)
    session = functools.partial(aiohttp.ClientSession, trace_configs=[trace])
    monkeypatch.setattr(aiohttp, "ClientSession", session)  # as syncd.dam.client makes it
    return opened


async def exercise(dam: DamClient) -> int:
    """Every kind of request syncd sends, once; returns how many were sent."""
    await dam.check_access()
    small = await dam.upload("/p", "small.txt", lambda: b"small", stream=False)
    big = await dam.upload("/p", "big.bin", lambda: b"b" * 100_000, stream=True)
    assert {r.uuid async for r in dam.list_files("/p")} == {small.uuid, big.uuid}
    assert await dam.details(small.uuid) is not None
    await dam.rename(small.uuid, "renamed.txt")
    assert await dam.delete(big.uuid)
    await dam.move_files([small.uuid], "/q")
    await dam.delete_many([small.uuid])
    return dam.requests


def requests_served(emu: Emulator) -> int:
    return sum(emu.stats.requests.values())


async def test_the_proxy_logs_the_headers_of_every_request_connect_included(squid):
    """The check below is only as good as the log: a header sent to squid shows in it."""
    target = f"127.0.0.1:{squid.refused}"
    await squid.send(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nX-Seen: yes")
    await squid.send(f"GET http://{target}/x HTTP/1.1\r\nHost: {target}\r\nX-Seen: too")
    lines = await squid.seen()
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"CONNECT {target} ")
    assert "X-Seen: yes" in lines[0]
    assert lines[1].startswith(f"GET http://{target}/x ")
    assert "X-Seen: too" in lines[1]


async def test_https_through_a_proxy_the_proxy_sees_only_connects_without_the_key(
    squid, tls_emulator, certs, pacer, proxy_env, connections
):
    proxy_env.setenv("HTTPS_PROXY", squid.url)
    with anyio.fail_after(30):
        async with DamClient(tls_emulator.url, TOKEN, KEY, pacer, ca_bundle=certs.ca) as dam:
            sent = await exercise(dam)
        lines = await squid.seen()
        while len(lines) < len(connections):
            lines += await squid.seen()
    host = tls_emulator.url.removeprefix("https://")
    assert len(lines) == len(connections) >= 1, "one CONNECT per connection, all logged"
    for line in lines:
        assert line.startswith(f"CONNECT {host} 200 ["), line
        assert "Host: " in line  # the headers are logged...
        assert KEY not in line  # ...and the key is not among them
    # Every request reached the DAM with the key: the emulator answers 401 without it.
    assert requests_served(tls_emulator) == sent == 9


async def test_a_loopback_http_dam_is_reached_directly_whatever_the_proxy_settings(
    squid, emulator, pacer, proxy_env
):
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        proxy_env.setenv(name, squid.url)
    with anyio.fail_after(30):
        async with DamClient(emulator.url, TOKEN, KEY, pacer) as dam:
            sent = await exercise(dam)
    assert await squid.seen() == []
    assert requests_served(emulator) == sent == 9


async def test_no_proxy_still_bypasses_the_proxy_for_an_https_dam(
    squid, tls_emulator, certs, pacer, proxy_env
):
    proxy_env.setenv("HTTPS_PROXY", squid.url)
    proxy_env.setenv("NO_PROXY", "localhost,127.0.0.1")
    with anyio.fail_after(30):
        async with DamClient(tls_emulator.url, TOKEN, KEY, pacer, ca_bundle=certs.ca) as dam:
            await dam.check_access()
    assert await squid.seen() == []
    assert requests_served(tls_emulator) == 1


async def test_syncd_over_https_through_the_proxy(tmp_path, squid, tls_emulator, certs):
    """The README's setup, the whole command: `HTTPS_PROXY` in the environment."""
    root = tmp_path / "src"
    write(root / "a.txt", "a")
    folders = [{"local": str(root), "remote": "/via-proxy"}]
    dam = {"ca_bundle": str(certs.ca)}
    cfg = write_config(tmp_path / "c.toml", tls_emulator, folders, dam=dam)
    quiet = {name: "" for name in os.environ if name.lower().endswith("_proxy")}
    run = await run_syncd(
        "--config", cfg, "--initial-sync", env={**quiet, "https_proxy": squid.url}
    )
    assert run.code == 0, run.stderr
    assert set(dam_tree(tls_emulator, "/via-proxy")) == {"a.txt"}
    lines = await squid.seen()
    assert lines
    assert all(line.startswith("CONNECT ") and KEY not in line for line in lines), lines


def test_env_proxy_is_for_https_only(proxy_env):
    proxy_env.setenv("HTTP_PROXY", "http://proxy.example:3128")
    proxy_env.setenv("HTTPS_PROXY", "http://proxy.example:3129")
    assert env_proxy("http://127.0.0.1:8750/t/v4") is None
    assert env_proxy("http://localhost:8750/t/v4") is None
    assert env_proxy("https://api.filerobot.com/t/v4") == "http://proxy.example:3129"
    proxy_env.setenv("NO_PROXY", ".filerobot.com")
    assert env_proxy("https://api.filerobot.com/t/v4") is None
    assert env_proxy("https://dam.example/t/v4") == "http://proxy.example:3129"


@pytest.mark.parametrize("base_url", ["https://dam.example:8443/", "https://DAM.Example:8443"])
async def test_the_key_goes_per_request_and_only_to_the_dam_origin(pacer, base_url):
    async with DamClient(base_url, TOKEN, KEY, pacer) as dam:
        assert dam._session is not None
        assert "X-Filerobot-Key" not in dam._session.headers  # not a session default
        own = dam._url("/files", {"folder": "/"})
        assert dam._with_key(own, {"A": "b"}) == {"A": "b", "X-Filerobot-Key": KEY}
        for other in (
            "https://dam.example:8444/proj/v4/files",
            "http://dam.example:8443/proj/v4/files",
            "https://evil.example/proj/v4/files",
            "https://dam.example.evil.example:8443/proj/v4/files",
        ):
            assert dam._with_key(yarl.URL(other), None) == {}, other
