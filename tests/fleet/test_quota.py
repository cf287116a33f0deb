"""`syncd.fleet.quota` against a real redis-server on loopback: two `FleetQuota`s on one
Redis are two hosts of one fleet. The bucket, the shared pause, the learned rate and its
once-per-round cut, the fallback when Redis is gone and the way back, the password kept
out of logs and status, and `rediss://`."""

from __future__ import annotations

import itertools
import subprocess
from pathlib import Path

import anyio
import pytest
from structlog.testing import capture_logs

from syncd.dam.limits import LearnedRate
from syncd.fleet.quota import FleetQuota
from syncd.redact import mask
from tests.fleet.conftest import need_redis
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e


def host(url: str, prefix: str = "proj", **kw: object) -> FleetQuota:
    return FleetQuota(url, prefix, LearnedRate(), timeout_s=0.3, **kw)  # type: ignore[arg-type]


async def test_the_hosts_of_a_fleet_take_turns_in_one_bucket(redis: RedisServer) -> None:
    a, b = host(redis.url), host(redis.url)
    try:
        with anyio.fail_after(10):
            waits = [await (a if i % 2 else b).reserve(20.0) for i in range(10)]
    finally:
        await a.aclose()
        await b.aclose()
    assert all(w is not None for w in waits)
    # One bucket at 20/s for both: each turn is 50 ms after the one before, whichever
    # host took it (the calls themselves take a little of that time).
    gaps = [y - x for x, y in itertools.pairwise(waits)]  # type: ignore[operator]
    assert all(0.03 < g < 0.051 for g in gaps), gaps
    assert a.reachable
    assert b.reachable


async def test_other_prefixes_are_other_fleets(redis: RedisServer) -> None:
    a, b = host(redis.url, "one"), host(redis.url, "two")
    try:
        with anyio.fail_after(10):
            first = [await a.reserve(5.0) for _ in range(3)]
            other = await b.reserve(5.0)
    finally:
        await a.aclose()
        await b.aclose()
    assert first[-1] is not None
    assert first[-1] > 0.3
    assert other == 0.0


async def test_a_pause_seen_by_one_host_holds_every_host(redis: RedisServer) -> None:
    a, b = host(redis.url), host(redis.url)
    try:
        with anyio.fail_after(10):
            await a.reserve(None)
            await a.limited(a.epoch, 0.4)
            started = anyio.current_time()
            assert await b.reserve(None) == 0.0
            waited = anyio.current_time() - started
    finally:
        await a.aclose()
        await b.aclose()
    assert 0.3 < waited < 1.0


async def test_the_fleet_learns_a_rate_and_cuts_it_once_per_round(redis: RedisServer) -> None:
    a, b = host(redis.url), host(redis.url)
    try:
        with anyio.fail_after(10):
            for _ in range(20):  # 20 requests in about 0.2 s: far above the rate learned
                await a.reserve(None)
                await anyio.sleep(0.01)
            epoch = a.epoch
            await a.limited(epoch, 0.0)
            learned = a.rate
            # B's refusal of a request sent before the cut is not news: no second cut.
            await b.limited(epoch, 0.0)
            assert b.rate == learned
            await b.reserve(None)
            await b.limited(b.epoch, 0.0)
            cut = b.rate
    finally:
        await a.aclose()
        await b.aclose()
    assert learned is not None
    assert 20 < learned < 200
    assert cut is not None
    assert 0.89 * learned < cut < learned
    assert a.epoch != epoch
    assert b.epoch != a.epoch


async def test_without_redis_the_host_paces_itself_and_comes_back(redis: RedisServer) -> None:
    q = host(redis.url, retry_s=0.2)
    try:
        with anyio.fail_after(20), capture_logs() as logs:
            assert await q.reserve(None) == 0.0
            redis.stop()
            assert await q.reserve(None) is None
            assert await q.reserve(None) is None  # no second try until retry_s has passed
            await q.limited(q.epoch, 1.0)
            assert q.statistics()["fleet_reachable"] is False
            redis.start()
            while await q.reserve(None) is None:  # noqa: ASYNC110  # polls Redis itself
                await anyio.sleep(0.05)
    finally:
        await q.aclose()
    events = [e["event"] for e in logs]
    assert events.count("fleet_unreachable") == 1
    assert events.count("fleet_restored") == 1
    warning = next(e for e in logs if e["event"] == "fleet_unreachable")
    assert warning["key"] == "fleet.redis_url"
    assert warning["redis_url"] == redis.url
    assert q.statistics()["fleet"] == "shared"


async def test_a_hung_redis_costs_a_request_at_most_the_timeout(redis: RedisServer) -> None:
    q = host(redis.url)
    assert redis.proc is not None
    try:
        with anyio.fail_after(10):
            await q.reserve(None)
            redis.proc.send_signal(19)  # SIGSTOP: connections stay open, nothing answers
            started = anyio.current_time()
            assert await q.reserve(None) is None
            assert anyio.current_time() - started < 1.0
    finally:
        redis.proc.send_signal(18)
        await q.aclose()


async def test_the_password_in_the_url_stays_out_of_logs_and_status(tmp_path: Path) -> None:
    need_redis()
    server = RedisServer(tmp_path / "redis")
    password = "hunter2-fleet-secret"
    server.command("CONFIG", "SET", "requirepass", password)
    url = f"redis://:{password}@127.0.0.1:{server.port}/0"
    q = host(url)
    try:
        with anyio.fail_after(10), capture_logs() as logs:
            assert await q.reserve(None) == 0.0
            server.stop()
            assert await q.reserve(None) is None
    finally:
        await q.aclose()
        server.stop()
    shown = repr(logs) + repr(q.statistics()) + q.url
    assert password not in shown
    assert q.url == f"redis://:***@127.0.0.1:{server.port}/0"
    assert password not in mask(f"connect {url} failed")  # registered as a secret


async def test_a_wrong_password_falls_back_like_an_unreachable_redis(
    redis: RedisServer,
) -> None:
    redis.command("CONFIG", "SET", "requirepass", "right-one")
    q = host(f"redis://:wrong-one@127.0.0.1:{redis.port}/0")
    try:
        with anyio.fail_after(10), capture_logs() as logs:
            assert await q.reserve(None) is None
    finally:
        await q.aclose()
    assert [e["event"] for e in logs] == ["fleet_unreachable"]


async def test_rediss_with_a_private_ca(tmp_path: Path) -> None:
    need_redis()
    try:
        server = RedisServer(tmp_path / "redis", tls=True)
    except (subprocess.CalledProcessError, RuntimeError) as exc:  # built without TLS
        pytest.fail(f"redis-server could not serve TLS: {exc}")
    trusted = host(server.url, ca_bundle=server.ca)
    untrusted = host(server.url)  # the system's CAs do not know this one
    try:
        with anyio.fail_after(10):
            assert await trusted.reserve(None) == 0.0
            assert await untrusted.reserve(None) is None
    finally:
        await trusted.aclose()
        await untrusted.aclose()
        server.stop()
