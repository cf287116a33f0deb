"""Tests of syncd.dam.pacer: backoff arithmetic, AIMD, pauses and retries with injected time."""

from __future__ import annotations

import random

import anyio
import pytest

from syncd.dam.pacer import MAX_PAUSE_S, Aimd, Backoff, LearnedRate, Pacer
from syncd.errors import PermanentDamError, RateLimited, TransientDamError


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


def test_backoff_ceiling_doubles_and_caps():
    b = Backoff(base_s=0.5, cap_s=4.0)
    assert [b.ceiling(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


def test_backoff_delay_is_full_jitter_within_ceiling():
    b = Backoff(base_s=1.0, cap_s=8.0)
    rng = random.Random(7)
    delays = [b.delay(3, rng) for _ in range(200)]
    assert all(0.0 <= d <= 8.0 for d in delays)
    assert min(delays) < 2.0  # spread over the whole range
    assert max(delays) > 6.0


def test_aimd_halves_once_per_round_and_recovers_additively():
    a = Aimd(maximum=8)
    gen = a.generation
    assert a.decrease(gen) is True
    assert a.allowed == 4
    assert a.decrease(gen) is False  # a request from the same round
    assert a.allowed == 4
    assert a.decrease(a.generation) is True
    assert a.allowed == 2
    steps = 0
    while a.allowed < 8:
        a.increase()
        steps += 1
    # One step per window of `limit` successes: 2+3+...+7 ≈ 27 successes to climb back.
    assert 20 <= steps <= 35
    assert a.increase() is False


def test_aimd_never_below_minimum():
    a = Aimd(maximum=2)
    for _ in range(5):
        a.decrease(a.generation)
    assert a.allowed == 1


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
    assert pacer.aimd.allowed == 4
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


def test_learned_rate_is_unknown_until_the_dam_pushes_back():
    r = LearnedRate()
    for i in range(100):
        r.accepted(i * 0.01)
    assert r.rate is None


def test_learned_rate_sits_just_under_what_was_accepted():
    r = LearnedRate(window_s=2.0, under=0.95)
    for i in range(200):  # 50 accepted per second for 4 s
        r.accepted(i * 0.02)
    assert r.limited(4.0) == pytest.approx(0.95 * 50, rel=0.03)


def test_an_opening_burst_is_not_read_as_a_huge_rate():
    r = LearnedRate()
    for i in range(50):  # the DAM's whole bucket in 50 ms
        r.accepted(i * 0.001)
    assert r.limited(0.05) == pytest.approx(0.95 * 50)  # counted over one second


def test_too_few_samples_teach_nothing():
    r = LearnedRate(min_samples=5)
    r.accepted(0.0)
    assert r.limited(0.1) is None


def test_learned_rate_grows_one_percent_a_second_and_drops_on_the_next_429():
    r = LearnedRate(growth=0.01)
    for i in range(100):
        r.accepted(i * 0.05)  # 20/s
    first = r.limited(5.0)
    assert first is not None
    r.accepted(15.0)  # ten quiet seconds later
    assert r.rate == pytest.approx(first * 1.10)
    again = r.limited(15.1)  # one sample in the window: step down by 10%
    assert again == pytest.approx(first * 1.10 * 0.9)


async def test_rate_limit_signal_spaces_requests_to_the_learned_rate():
    t = FakeTime()
    pacer = Pacer(8, clock=t.clock, sleep=t.sleep)

    async def ok() -> None:
        t.now += 0.001  # a fast DAM: 1 ms per request

    for _ in range(20):
        await pacer.call(ok, what="x")
    calls = 0

    async def limited_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimited("slow down", status=429, retry_after=1.0)

    await pacer.call(limited_once, what="x")
    rate = pacer.learned.rate
    assert rate is not None
    start = t.now
    for _ in range(10):
        await pacer.call(ok, what="x")
    # Ten requests now take about ten intervals of the learned rate, not 10 ms.
    assert t.now - start == pytest.approx(10 / rate, rel=0.2)


async def test_a_bare_503_pauses_but_teaches_no_rate():
    t = FakeTime()
    pacer = Pacer(8, clock=t.clock, sleep=t.sleep, rng=random.Random(2))

    async def ok() -> None:
        t.now += 0.001

    for _ in range(20):
        await pacer.call(ok, what="x")
    calls = 0

    async def overloaded_once() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RateLimited("overloaded", status=503)

    await pacer.call(overloaded_once, what="x")
    assert pacer.learned.rate is None
    assert pacer.aimd.allowed == 4  # but concurrency halves
