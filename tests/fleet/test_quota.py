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


async def take_turns(q: FleetQuota, rate: float, n: int, starts: list[float]) -> None:
    """`n` requests' turns at a cap of `rate`/s: when each would start."""
    for _ in range(n):
        wait = await q.reserve(rate)
        assert wait is not None
        await anyio.sleep(wait)
        starts.append(anyio.current_time())


async def test_the_hosts_of_a_fleet_take_turns_in_one_bucket(redis: RedisServer) -> None:
    a, b = host(redis.url), host(redis.url)
    starts: list[float] = []
    try:
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(take_turns, a, 20.0, 6, starts)
                tg.start_soon(take_turns, b, 20.0, 6, starts)
    finally:
        await a.aclose()
        await b.aclose()
    # One bucket at 20/s for both: 12 turns, each about 50 ms after the one before,
    # whichever host took it; two buckets would have let both start at once.
    starts.sort()
    gaps = [y - x for x, y in itertools.pairwise(starts)]
    # (Client-side wake-ups: a late one shortens the next gap, so the bound is loose.)
    assert sorted(gaps)[1] > 0.025, gaps
    assert starts[-1] - starts[0] > 11 * 0.045
    assert a.reachable
    assert b.reachable


async def test_other_prefixes_are_other_fleets(redis: RedisServer) -> None:
    a, b = host(redis.url, "one"), host(redis.url, "two")
    starts: list[float] = []
    try:
        with anyio.fail_after(10):
            began = anyio.current_time()
            await take_turns(a, 5.0, 3, starts)
            other = await b.reserve(5.0)
    finally:
        await a.aclose()
        await b.aclose()
    assert starts[-1] - began > 0.35  # three turns at 5/s
    assert other == 0.0  # the other fleet's bucket is empty


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


class TokenBucket:
    """A DAM's quota, as the emulator keeps it: `rate`/s, `burst` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst, self.tokens = rate, burst, burst
        self.at = anyio.current_time()

    def take(self) -> bool:
        now = anyio.current_time()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


async def test_three_hosts_find_the_dams_limit_together(redis: RedisServer) -> None:
    dam = TokenBucket(40.0, 10.0)
    hosts = [host(redis.url) for _ in range(3)]
    accepted: list[float] = []
    refused: list[float] = []
    began = anyio.current_time()

    async def requests(q: FleetQuota) -> None:
        while anyio.current_time() - began < 5.0:
            wait = await q.reserve(None)
            assert wait is not None
            await anyio.sleep(wait)
            epoch = q.epoch
            await anyio.sleep(0.005)  # the round trip
            if dam.take():
                accepted.append(anyio.current_time())
            else:
                refused.append(anyio.current_time())
                await q.limited(epoch, 0.0)

    try:
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                for q in hosts:
                    for _ in range(4):  # four requests in flight per host
                        tg.start_soon(requests, q)
    finally:
        for q in hosts:
            await q.aclose()
    # Within a few seconds the fleet learned the DAM's rate from its refusals, and then
    # used nearly all of it, with few refusals: the slow start kept the three hosts from
    # bursting into the limit together.
    assert hosts[0].rate is not None
    assert 0.8 * 40 < hosts[0].rate < 1.15 * 40
    late = [t for t in accepted if t - began > 2.5]
    assert len(late) / 2.5 > 0.85 * 40
    assert len(refused) < 0.1 * (len(accepted) + len(refused)), (len(refused), len(accepted))
