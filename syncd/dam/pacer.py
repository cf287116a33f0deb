"""The one pacer every DAM request goes through, from every worker and every folder.

It owns three things:

* **concurrency**: how many requests may be in flight. It drops by half on a rate-limit
  signal (429 or 503) and climbs back by one per window of successes (AIMD), so a
  rate-limited DAM sees fewer parallel requests rather than the same storm again;
* **rate**: the first quota signal (a 429, or a 503 with `Retry-After`) also sets a request
  rate just under the one the DAM was accepting, and requests are spaced to it; it then
  grows by 1% a second while the DAM keeps accepting (AIMD on the rate). Concurrency alone
  cannot hold a fast DAM to a quota of N requests/s, spacing can; an optional hard cap
  comes from the config;
* **pauses**: on a rate-limit signal *every* worker waits, for `Retry-After` when the DAM
  sent one, otherwise for an exponential backoff with full jitter;
* **retries**: transient failures are retried with backoff up to a limit, then re-raised
  so the caller can park the job.

The arithmetic lives in small pure classes (`Backoff`, `Aimd`) so it is tested as data;
`Pacer` adds the waiting. Time and randomness are injectable.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import anyio
import structlog

from syncd.errors import RateLimited, TransientDamError

__all__ = ["Aimd", "Backoff", "LearnedRate", "Pacer"]

T = TypeVar("T")

MAX_PAUSE_S = 120.0
"""The longest a `Retry-After` may pause every request."""
log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Exponential backoff with full jitter (AWS architecture blog, "Exponential Backoff
    And Jitter"): attempt n waits a uniform random time in [0, min(cap, base·2ⁿ)]."""

    base_s: float = 0.5
    cap_s: float = 30.0
    max_attempts: int = 6

    def ceiling(self, attempt: int) -> float:
        """The largest delay attempt `attempt` (0-based) may wait."""
        return min(self.cap_s, self.base_s * (2.0**attempt))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """A jittered delay for attempt `attempt` (0-based)."""
        return rng.uniform(0.0, self.ceiling(attempt))


@dataclass
class Aimd:
    """Additive-increase, multiplicative-decrease concurrency limit.

    A decrease only counts once per round: requests that started before the last
    decrease cannot cause another one, so eight simultaneous 429s halve the limit once,
    not eight times.
    """

    maximum: int
    minimum: int = 1
    limit: float = 0.0
    generation: int = 0

    def __post_init__(self) -> None:
        if not self.limit:
            self.limit = float(self.maximum)

    @property
    def allowed(self) -> int:
        """Requests allowed in flight now."""
        return max(self.minimum, int(self.limit))

    def decrease(self, started_generation: int) -> bool:
        """Halve the limit for a rate-limit signal; False when this round already did."""
        if started_generation < self.generation:
            return False
        self.limit = max(float(self.minimum), self.limit / 2.0)
        self.generation += 1
        return True

    def increase(self) -> bool:
        """Grow by one request per window of successes; True when `allowed` changed."""
        if self.limit >= self.maximum:
            return False
        before = self.allowed
        self.limit = min(float(self.maximum), self.limit + 1.0 / max(self.limit, 1.0))
        return self.allowed != before


@dataclass
class LearnedRate:
    """The request rate a rate-limited DAM accepts, learned from its own answers.

    Unknown (no limit) until the first rate-limit signal. Then it is set a little under the
    rate of accepted requests over the last `window_s` seconds (counted over at least one
    second, so an opening burst does not read as a huge rate), and it grows by `growth`
    per second of accepted requests until the DAM pushes back again.
    """

    window_s: float = 2.0
    under: float = 0.95
    growth: float = 0.01
    floor: float = 0.5
    min_samples: int = 5
    rate: float | None = None
    _accepted: deque[float] = field(default_factory=deque)
    _last: float | None = None

    def accepted(self, now: float) -> None:
        """A request was accepted at `now`."""
        self._accepted.append(now)
        while self._accepted[0] < now - self.window_s:
            self._accepted.popleft()
        if self.rate is not None and self._last is not None:
            self.rate *= 1.0 + self.growth * (now - self._last)
        self._last = now

    def limited(self, now: float) -> float | None:
        """The DAM refused a request at `now`; returns the new rate (None while too few
        requests were accepted lately to tell: then only pauses and concurrency act)."""
        while self._accepted and self._accepted[0] < now - self.window_s:
            self._accepted.popleft()
        if len(self._accepted) < self.min_samples:
            # Too little traffic lately to measure: just step down from what was allowed.
            if self.rate is not None:
                self.rate = max(self.floor, self.rate * 0.9)
            return self.rate
        span = max(1.0, now - self._accepted[0])
        seen = self.under * len(self._accepted) / span
        self.rate = max(self.floor, seen if self.rate is None else min(seen, self.rate * 0.9))
        self._last = now
        return self.rate


class Pacer:
    """Shared request pacing: concurrency limit, global pauses, optional rate cap,
    retries.

    Args:
        concurrency: the most requests in flight (the worker count).
        backoff: retry and pause policy.
        max_requests_per_second: an optional hard cap across all requests.
        clock: monotonic seconds; `sleep`: async sleep; `rng`: jitter source.
    """

    def __init__(
        self,
        concurrency: int,
        *,
        backoff: Backoff | None = None,
        max_requests_per_second: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.backoff = backoff or Backoff()
        self.aimd = Aimd(maximum=concurrency)
        self.learned = LearnedRate()
        self._cap_interval = 1.0 / max_requests_per_second if max_requests_per_second else 0.0
        self._interval = self._cap_interval
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._in_flight = 0
        # Created only when a request has to wait: building an anyio.Event per request
        # would cost more than the bookkeeping it guards.
        self._changed: anyio.Event | None = None
        self._pause_until = 0.0
        self._next_start = 0.0
        self._limited_streak = 0
        self.waits = 0
        self.rate_limited = 0
        # Called whenever a request attempt ends (and per chunk of a streamed upload),
        # except a listing's pages, which beat only when they add files (`call`'s
        # `beat`): the daemon's watchdog takes it as proof that the workers are not wedged.
        self.heartbeat: Callable[[], None] = _nothing

    @property
    def in_flight(self) -> int:
        """Requests running now."""
        return self._in_flight

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[int]:
        """Hold one request slot; yields the AIMD generation the request started in."""
        while True:
            now = self._clock()
            if self._pause_until > now:
                await self._sleep(self._pause_until - now)
                continue
            if self._in_flight >= self.aimd.allowed:
                if self._changed is None:
                    self._changed = anyio.Event()
                await self._changed.wait()
                continue
            if self._interval:
                start = max(now, self._next_start)
                self._next_start = start + self._interval
                # Lateness under a millisecond is not worth a trip through the loop.
                if start > now + 0.001:
                    # The slot is claimed before sleeping so other workers queue behind it.
                    self._in_flight += 1
                    try:
                        await self._sleep(start - now)
                    finally:
                        self._in_flight -= 1
            break
        self._in_flight += 1
        try:
            yield self.aimd.generation
        finally:
            self._in_flight -= 1
            self._wake()

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        what: str,
        before_retry: Callable[[], Awaitable[T | None]] | None = None,
        beat: bool = True,
    ) -> T:
        """Run `fn` under the pacer, retrying transient failures.

        Args:
            fn: the request.
            what: a short label for logs (e.g. `upload a/b.jpg`).
            before_retry: for requests that are not idempotent (uploads): called before
                each retry after a failure whose outcome is unknown; a non-None result
                means the first attempt did land and is returned instead of retrying.
            beat: whether a success counts as progress (`heartbeat`). A listing passes
                False and beats itself only for pages that add files, so a DAM that
                serves pages forever cannot keep the watchdog fed; failed attempts
                always beat, as their number is bounded by the retry limit.

        Raises:
            TransientDamError: when the retry limit runs out.
            PermanentDamError: at once.
        """
        attempt = 0
        while True:
            async with self.slot() as generation:
                try:
                    result = await fn()
                except RateLimited as exc:
                    self.heartbeat()
                    self._on_rate_limited(exc, generation, what)
                    error: TransientDamError = exc
                except TransientDamError as exc:
                    self.heartbeat()
                    error = exc
                else:
                    if beat:
                        self.heartbeat()
                    self._on_success()
                    return result
            attempt += 1
            if attempt >= self.backoff.max_attempts:
                raise error
            if not isinstance(error, RateLimited):
                delay = self.backoff.delay(attempt, self._rng)
                log.debug(
                    "dam_retry",
                    what=what,
                    attempt=attempt,
                    delay_s=round(delay, 3),
                    error=str(error),
                )
                await self._sleep(delay)
            # A 429 was refused before any work; anything else (a 503 from a gateway
            # included) may have been committed.
            if before_retry is not None and error.status != 429:
                found = await before_retry()
                if found is not None:
                    return found

    def statistics(self) -> dict[str, float]:
        """A snapshot for logs and status lines."""
        return {
            "concurrency": self.aimd.allowed,
            "in_flight": self._in_flight,
            "rate_limited": self.rate_limited,
            "waits": self.waits,
        }

    def _on_success(self) -> None:
        self._limited_streak = 0
        self.learned.accepted(self._clock())
        if self.learned.rate is not None:
            self._interval = max(self._cap_interval, 1.0 / self.learned.rate)
        before = self.aimd.allowed
        if self.aimd.increase() and self.aimd.allowed == self.aimd.maximum:
            log.info("pacer_recovered", concurrency=f"{before}→{self.aimd.allowed}")
        self._wake()

    def _on_rate_limited(self, exc: RateLimited, generation: int, what: str) -> None:
        self.rate_limited += 1
        retry_after = exc.retry_after
        before = self.aimd.allowed
        decreased = self.aimd.decrease(generation)
        if retry_after is not None:
            # A one-shot run must not stall for an hour on one header; the retry limit
            # still applies after the pause.
            wait = min(retry_after, MAX_PAUSE_S)
        elif decreased:
            wait = self.backoff.delay(self._limited_streak, self._rng)
            self._limited_streak += 1
        else:
            return  # this round already paused everyone
        self._pause_until = max(self._pause_until, self._clock() + wait)
        if decreased:
            # A 429, or a 503 that says when to come back, is a quota: learn its rate. A bare
            # 503 may be an overloaded or failing node; pausing and fewer parallel
            # requests answer that, without slowing every later request.
            rate = self.learned.rate
            if exc.status == 429 or retry_after is not None:
                rate = self.learned.limited(self._clock())
            if rate is not None:
                self._interval = max(self._cap_interval, 1.0 / rate)
            self.waits += 1
            log.warning(
                "rate_limited",
                wait_s=round(wait, 2),
                concurrency=f"{before}→{self.aimd.allowed}",
                rate_per_s=round(rate, 1) if rate is not None else None,
                retry_after=retry_after is not None,
                request=what,
            )

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None


def _nothing() -> None:
    pass
