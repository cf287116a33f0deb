"""Tests of syncd.dam.pacer: pauses, retries, spacing and the concurrency limit at work, with
injected time."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from functools import partial

import anyio
import pytest

from syncd.dam.limits import Backoff
from syncd.dam.pacer import MAX_PAUSE_S, Pacer
from syncd.errors import DamTimeout, PermanentDamError, RateLimited, TransientDamError


class FakeTime:
    """A clock that only moves when something sleeps, recording every sleep."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
        await anyio.lowlevel.checkpoint()


async def test_call_retries_transient_then_succeeds():
    t = FakeTime()
    pacer = Pacer(
        4,
        backoff=Backoff(base_s=1.0, max_attempts=4),
        clock=t.clock,
        sleep=t.sleep,
        rng=random.Random(1),
    )
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise TransientDamError("boom", status=500)
        return "ok"

    assert await pacer.call(flaky, what="x") == "ok"
    assert attempts == 3
    assert len(t.sleeps) == 2
    assert 0 <= t.sleeps[0] <= 2.0
    assert 0 <= t.sleeps[1] <= 4.0


async def test_call_gives_up_after_max_attempts():
    t = FakeTime()
    pacer = Pacer(2, backoff=Backoff(max_attempts=3), clock=t.clock, sleep=t.sleep)

    async def down() -> None:
        raise TransientDamError("down")

    with pytest.raises(TransientDamError):
        await pacer.call(down, what="x")
    assert len(t.sleeps) == 2


async def test_permanent_errors_are_not_retried():
    pacer = Pacer(2)
    calls = 0

    async def bad() -> None:
        nonlocal calls
        calls += 1
        raise PermanentDamError("nope", status=400)

    with pytest.raises(PermanentDamError):
        await pacer.call(bad, what="x")
    assert calls == 1


async def test_retry_after_pauses_every_worker_and_halves_concurrency():
    t = FakeTime()
    pacer = Pacer(8, clock=t.clock, sleep=t.sleep)
    calls = 0

    async def limited() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimited("slow down", status=429, retry_after=2.0)
        return "ok"

    assert await pacer.call(limited, what="x") == "ok"
    assert pacer.limit.allowed == 4
    assert pacer.rate_limited == 1
    assert t.sleeps == [2.0]  # the global pause, honoured exactly
    # A second request waits out the same pause window if it starts inside it.
    pacer._pause_until = t.now + 1.5
    assert await pacer.call(limited, what="y") == "ok"
    assert t.sleeps[-1] == 1.5


async def test_rate_limit_without_header_uses_jittered_backoff():
    t = FakeTime()
    pacer = Pacer(
        4, backoff=Backoff(base_s=1.0), clock=t.clock, sleep=t.sleep, rng=random.Random(3)
    )
    calls = 0

    async def limited() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimited("slow down", status=429)
        return "ok"

    await pacer.call(limited, what="x")
    assert len(t.sleeps) == 1
    assert 0 <= t.sleeps[0] <= 1.0


async def test_before_retry_can_adopt_a_committed_upload():
    t = FakeTime()
    pacer = Pacer(2, clock=t.clock, sleep=t.sleep)
    uploads = 0

    async def upload() -> str:
        nonlocal uploads
        uploads += 1
        raise TransientDamError("connection reset")

    async def look() -> str | None:
        return "found-uuid"

    assert await pacer.call(upload, what="x", before_retry=look) == "found-uuid"
    assert uploads == 1


async def test_concurrency_limit_is_enforced():
    pacer = Pacer(3)
    running = peak = 0

    async def req() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(0.01)
        running -= 1

    async def one() -> None:
        await pacer.call(req, what="x")

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for _ in range(12):
                tg.start_soon(one)
    assert peak == 3


async def test_max_requests_per_second_spaces_requests():
    t = FakeTime()
    pacer = Pacer(4, max_requests_per_second=10, clock=t.clock, sleep=t.sleep)

    async def req() -> None:
        return None

    for _ in range(5):
        await pacer.call(req, what="x")
    assert t.now == pytest.approx(0.4)


async def test_a_huge_retry_after_is_capped():
    t = FakeTime()
    pacer = Pacer(2, clock=t.clock, sleep=t.sleep)
    calls = 0

    async def limited() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimited("come back in an hour", status=429, retry_after=3600.0)
        return "ok"

    assert await pacer.call(limited, what="x") == "ok"
    assert t.sleeps == [MAX_PAUSE_S]


@pytest.mark.parametrize(("status", "looks"), [(429, False), (503, True), (500, True)])
async def test_only_a_429_skips_the_look_before_retrying(status, looks):
    t = FakeTime()
    pacer = Pacer(2, clock=t.clock, sleep=t.sleep)
    calls = looked = 0

    async def upload() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            error = RateLimited if status in (429, 503) else TransientDamError
            raise error("busy", status=status)
        return "uploaded"

    async def look() -> str | None:
        nonlocal looked
        looked += 1
        return None

    assert await pacer.call(upload, what="x", before_retry=look) == "uploaded"
    assert looked == (1 if looks else 0)


async def warmed_up(rng: random.Random | None = None) -> tuple[FakeTime, Pacer]:
    """A pacer that has seen 20 requests accepted by a fast DAM (1 ms each), enough for a
    refusal to teach it a rate."""
    t = FakeTime()
    pacer = Pacer(8, clock=t.clock, sleep=t.sleep, rng=rng)
    for _ in range(20):
        await pacer.call(partial(fast, t), what="x")
    return t, pacer


async def fast(t: FakeTime) -> None:
    t.now += 0.001


def refused_once(error: RateLimited) -> Callable[[], Awaitable[None]]:
    """A request the DAM refuses with `error` the first time, and accepts after."""
    calls = 0

    async def request() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise error

    return request


async def test_rate_limit_signal_spaces_requests_to_the_learned_rate():
    t, pacer = await warmed_up()
    await pacer.call(refused_once(RateLimited("slow", status=429, retry_after=1.0)), what="x")
    rate = pacer.learned.rate
    assert rate is not None
    start = t.now
    for _ in range(10):
        await pacer.call(partial(fast, t), what="x")
    # Ten requests now take about ten intervals of the learned rate, not 10 ms.
    assert t.now - start == pytest.approx(10 / rate, rel=0.2)


async def test_a_bare_503_pauses_but_teaches_no_rate():
    _, pacer = await warmed_up(random.Random(2))
    await pacer.call(refused_once(RateLimited("overloaded", status=503)), what="x")
    assert pacer.learned.rate is None
    assert pacer.limit.allowed == 4  # but concurrency halves


async def test_once_the_rate_is_known_a_short_retry_after_delays_only_that_request():
    t, pacer = await warmed_up()
    await pacer.call(refused_once(RateLimited("slow", status=429, retry_after=1.0)), what="x")
    assert pacer.learned.rate is not None
    assert 1.0 in t.sleeps  # the refused request waited its Retry-After itself...
    assert pacer._pause_until <= t.now  # ...and nobody else was paused


async def test_a_long_retry_after_pauses_everyone_even_with_a_known_rate():
    t, pacer = await warmed_up()
    before = t.now
    await pacer.call(refused_once(RateLimited("quota", status=429, retry_after=30.0)), what="x")
    assert pacer._pause_until == pytest.approx(before + 30.0, abs=0.01)


async def test_timeouts_halve_the_concurrency_once_per_round():
    t = FakeTime()
    pacer = Pacer(16, initial=16, clock=t.clock, sleep=t.sleep, rng=random.Random(1))

    async def timed_out() -> None:
        raise DamTimeout("no answer")

    with pytest.raises(DamTimeout):
        await pacer.call(timed_out, what="x")
    # Six attempts, each starting after the previous decrease: halved each time, to 1.
    assert pacer.limit.allowed == 1


async def test_round_trips_near_their_floor_raise_the_concurrency():
    # Real time (a fake clock cannot run requests side by side): 20 ms round trips.
    pacer = Pacer(64)
    assert pacer.limit.allowed == 16
    most = 0

    async def request() -> None:
        nonlocal most
        most = max(most, pacer.in_flight)
        await anyio.sleep(0.02)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(1000):
                tg.start_soon(partial(pacer.call, request, what="x"))
    assert pacer.limit.allowed == 64
    assert most == 64


async def test_a_freed_slot_wakes_one_waiter_not_all():
    pacer = Pacer(2, initial=2)
    release = anyio.Event()
    woken = 0

    async def hold() -> None:
        await release.wait()

    async def count() -> None:
        nonlocal woken
        woken += 1

    async with anyio.create_task_group() as tg:
        for _ in range(2):
            tg.start_soon(partial(pacer.call, hold, what="hold"))
        await anyio.wait_all_tasks_blocked()
        for _ in range(10):
            tg.start_soon(partial(pacer.call, count, what="wait"))
        await anyio.wait_all_tasks_blocked()
        assert len(pacer._waiters) == 10
        release.set()
    assert woken == 10
    assert not pacer._waiters
