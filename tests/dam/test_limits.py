"""Tests of syncd.dam.limits: backoff, the concurrency limit and the learned rate, as
data (time is an argument)."""

from __future__ import annotations

import random

import pytest

from syncd.dam.limits import Backoff, ConcurrencyLimit, LearnedRate

pytestmark = pytest.mark.unit


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


def run(limit: ConcurrencyLimit, rtt: float, seconds: float, now: float = 0.0, jitter=0.0):
    """Requests at full use of the limit for `seconds`, each taking `rtt` (± jitter);
    returns the time reached and the reasons of each change."""
    rng = random.Random(3)
    changes = []
    while now < seconds:
        batch = limit.allowed
        now += rtt
        for _ in range(batch):
            sample = rtt + rng.uniform(-jitter, jitter)
            if (reason := limit.sample(sample, batch, now)) is not None:
                changes.append(reason)
    return now, changes


def test_a_distant_dam_that_keeps_up_gets_the_ceiling_within_about_a_second():
    limit = ConcurrencyLimit(maximum=64, initial=8)
    _, changes = run(limit, rtt=0.100, seconds=1.5, jitter=0.02)
    assert limit.allowed == 64
    assert set(changes) == {"grow"}


def test_rising_round_trips_shrink_the_limit_and_steady_ones_hold_it():
    limit = ConcurrencyLimit(maximum=64, initial=32)
    now, _ = run(limit, rtt=0.010, seconds=0.5)
    assert limit.allowed == 64
    now, changes = run(limit, rtt=0.050, seconds=now + 0.5, now=now)  # 5× the floor
    assert "queueing" in changes
    assert limit.allowed < 64
    held = limit.allowed
    run(limit, rtt=0.015, seconds=now + 0.5, now=now)  # 1.5× the floor: neither
    assert limit.allowed == held


def test_an_idle_limit_does_not_grow():
    limit = ConcurrencyLimit(maximum=64, initial=8)
    for i in range(200):  # one request at a time: syncd, not the DAM, is the bottleneck
        limit.sample(0.05, 1, i * 0.05)
    assert limit.allowed == 8


def test_pushback_halves_once_per_round_and_never_below_the_minimum():
    limit = ConcurrencyLimit(maximum=64, minimum=3, initial=16)
    gen = limit.generation
    assert limit.decrease(gen) is True
    assert limit.allowed == 8
    assert limit.decrease(gen) is False  # a request from the same round
    assert limit.allowed == 8
    for _ in range(5):
        limit.decrease(limit.generation)
    assert limit.allowed == 3


def test_the_floor_is_measured_again_so_a_slower_path_is_not_a_queue_forever():
    limit = ConcurrencyLimit(maximum=64, initial=16, floor_windows=5)
    now, _ = run(limit, rtt=0.010, seconds=0.3)
    now, _ = run(limit, rtt=0.040, seconds=now + 10.0, now=now)  # the path got slower
    assert limit.floor_rtt == pytest.approx(0.040)
    assert limit.allowed == 64


def test_learned_rate_is_unknown_until_the_dam_pushes_back():
    r = LearnedRate()
    for i in range(100):
        r.accepted(i * 0.01)
    assert r.rate is None


def test_too_few_samples_teach_nothing():
    r = LearnedRate(min_samples=5)
    r.accepted(0.0)
    assert r.limited(0.1) is None


def bucket(rate: float, burst: float, offered: float, seconds: float, r: LearnedRate):
    """A token bucket DAM (`rate`/s, `burst`) offered `offered` requests/s, or the learned
    rate once there is one; returns the learned rate at the end, and the 429 count."""
    tokens, now, last, refused = burst, 0.0, 0.0, 0
    while now < seconds:
        pace = r.rate if r.rate is not None else offered
        now += 1.0 / pace
        tokens = min(burst, tokens + (now - last) * rate)
        last = now
        if tokens >= 1:
            tokens -= 1
            r.accepted(now)
        else:
            refused += 1
            r.limited(now)
    return r.rate, refused


@pytest.mark.parametrize("burst", [1, 10, 100, 1000])
def test_the_rate_comes_close_to_the_limit_in_seconds_whatever_the_burst(burst):
    r = LearnedRate()
    learned, _ = bucket(30.0, burst, offered=500.0, seconds=4.0 + burst / 30.0, r=r)
    assert learned is not None
    # It probes upward between signals, so it may stand a little over the limit.
    assert 0.85 * 30 <= learned <= 1.15 * 30


def test_it_probes_upward_and_stays_near_the_limit_with_few_refusals():
    r = LearnedRate()
    bucket(100.0, 10, offered=500.0, seconds=2.0, r=r)  # learn it
    r.rate = 50.0  # as if the DAM had been slower for a while
    accepted_before = len(r._accepted)
    learned, refused = bucket(100.0, 10, offered=0, seconds=30.0, r=r)
    assert learned is not None
    assert learned >= 0.85 * 100  # it found its way back up
    assert refused <= 0.05 * 30 * 100
    assert accepted_before > 0
