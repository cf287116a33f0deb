"""The one pacer every DAM request goes through, from every worker and every folder.

It owns these things:

* **concurrency**: how many requests may be in flight, between `[dam] min_workers` and
  `[dam] workers`. It grows while round trips stay near their floor and the DAM does not
  push back, shrinks when they rise (a queue) and halves on a rate-limit signal (429 or
  503) or a timeout (`ConcurrencyLimit`), so a DAM 100 ms away gets enough requests in
  flight and a struggling one gets fewer;
* **rate**: the first quota signal (a 429, or a 503 with `Retry-After`) also sets a request
  rate just under the one the DAM was accepting, and requests are spaced to it; the rate
  is measured again at each later signal and probes upward in between (`LearnedRate`).
  Concurrency alone cannot hold a fast DAM to a quota of N requests/s, spacing can; an
  optional hard cap comes from the config;
* **pauses**: on a rate-limit signal *every* worker waits, for `Retry-After` when the DAM
  sent one, otherwise for an exponential backoff with full jitter;
* **the fleet** (`[fleet] redis_url`): the rate, the pauses and the hard cap are then
  the fleet's, kept in Redis (`syncd.fleet`), so hosts that share a project's quota
  share its pushback too; concurrency stays each host's own. When Redis cannot be
  reached, the host paces itself as above until it can;
* **retries**: transient failures are retried with backoff up to a limit, then re-raised
  so the caller can park the job.

The arithmetic lives in `syncd.dam.limits`, pure and tested as data; `Pacer` adds the
waiting. Time and randomness are injectable.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import anyio
import structlog

from syncd.dam.limits import Backoff, ConcurrencyLimit, LearnedRate
from syncd.errors import DamTimeout, RateLimited, TransientDamError

if TYPE_CHECKING:
    from syncd.fleet.quota import FleetQuota

__all__ = ["Pacer"]

T = TypeVar("T")

MAX_PAUSE_S = 120.0
"""The longest a `Retry-After` may pause every request."""
_OWN_RETRY_AFTER_S = 2.0
"""Once the DAM's rate is known, a `Retry-After` up to this long delays only the request
that got it."""
log = structlog.get_logger(__name__)


class Pacer:
    """Shared request pacing: concurrency limit, global pauses, optional rate cap,
    retries.

    Args:
        concurrency: the most requests in flight (`[dam] workers`).
        minimum: the fewest the limit may fall to (`[dam] min_workers`).
        initial: where the limit starts.
        backoff: retry and pause policy.
        max_requests_per_second: an optional hard cap across all requests (across the
            fleet's, with `fleet`).
        fleet: the fleet's shared bucket, pause and rate in Redis; None: this host alone.
        clock: monotonic seconds; `sleep`: async sleep; `rng`: jitter source.
    """

    def __init__(
        self,
        concurrency: int,
        *,
        minimum: int = 1,
        initial: int = 16,
        backoff: Backoff | None = None,
        max_requests_per_second: float | None = None,
        fleet: FleetQuota | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.backoff = backoff or Backoff()
        self.fleet = fleet
        self.limit = ConcurrencyLimit(maximum=concurrency, minimum=minimum, initial=initial)
        self.learned = LearnedRate()
        self._cap_interval = 1.0 / max_requests_per_second if max_requests_per_second else 0.0
        self._interval = self._cap_interval
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._in_flight = 0
        # Requests waiting for a slot, first come first served; an event is made only for
        # a request that has to wait, and a freed slot wakes one of them, not all (64
        # waiters woken per finished request would cost more than the requests).
        self._waiters: deque[anyio.Event] = deque()
        self._pause_until = 0.0
        self._next_start = 0.0
        self._epoch = 0  # bumped when the DAM's pushback slows the spacing down
        self._limited_streak = 0
        self.waits = 0
        self.rate_limited = 0
        self._logged_at = -60.0
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
            if self._in_flight >= self.limit.allowed:
                await self._wait_for_slot()
                continue
            # The slot is claimed before any wait for a turn, so other requests queue
            # behind it.
            self._in_flight += 1
            try:
                requeue = await self._take_turn(now)
            except BaseException:
                self._in_flight -= 1
                self._wake()
                raise
            if not requeue:
                break
            self._in_flight -= 1
            self._wake()
        try:
            yield self.limit.generation
        finally:
            self._in_flight -= 1
            self._wake()

    async def _take_turn(self, now: float) -> bool:
        """Wait for this request's turn at the rate: the fleet's, when Redis answers,
        else this host's own spacing. True: the DAM pushed back meanwhile, queue again."""
        if self.fleet is not None:
            wait = await self.fleet.reserve(
                1.0 / self._cap_interval if self._cap_interval else None
            )
            if wait is not None:
                if wait > 0.001:
                    await self._sleep(wait)
                return False
            now = self._clock()
        if not self._interval:
            return False
        start = max(now, self._next_start)
        self._next_start = start + self._interval
        # Lateness under a millisecond is not worth a trip through the loop.
        if start <= now + 0.001:
            return False
        epoch = self._epoch
        await self._sleep(start - now)
        return epoch != self._epoch  # requests spaced for the old rate queue at the new one

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        what: str,
        before_retry: Callable[[], Awaitable[T | None]] | None = None,
        beat: bool = True,
        timed: bool = True,
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
            own_wait, pause = 0.0, 0.0
            async with self.slot() as generation:
                epoch = self._epoch
                fleet_epoch = self.fleet.epoch if self.fleet is not None else ""
                started = self._clock()
                try:
                    result = await fn()
                except RateLimited as exc:
                    self.heartbeat()
                    own_wait, pause = self._on_rate_limited(exc, generation, epoch, what)
                    error: TransientDamError = exc
                except TransientDamError as exc:
                    self.heartbeat()
                    if isinstance(exc, DamTimeout):
                        self._shrink(generation, "timeout")
                    error = exc
                else:
                    if beat:
                        self.heartbeat()
                    self._on_success(self._clock() - started if timed else None)
                    return result
            if self.fleet is not None and isinstance(error, RateLimited) and (error.quota or pause):
                await self.fleet.limited(fleet_epoch, pause)
            attempt += 1
            if attempt >= self.backoff.max_attempts:
                raise error
            if own_wait:
                await self._sleep(own_wait)
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

    def statistics(self) -> dict[str, Any]:
        """A snapshot for logs and status lines."""
        stats: dict[str, Any] = {
            "concurrency": self.limit.allowed,
            "in_flight": self._in_flight,
            "rate_limited": self.rate_limited,
            "waits": self.waits,
        }
        if self.fleet is not None:
            stats.update(self.fleet.statistics())
        return stats

    async def aclose(self) -> None:
        """Let go of what the pacer holds outside the process (the fleet's Redis)."""
        if self.fleet is not None:
            await self.fleet.aclose()

    def _on_success(self, rtt: float | None) -> None:
        self._limited_streak = 0
        now = self._clock()
        self.learned.accepted(now)
        if self.learned.rate is not None:
            self._interval = max(self._cap_interval, 1.0 / self.learned.rate)
        if rtt is not None:
            before = self.limit.allowed
            if (reason := self.limit.sample(rtt, self._in_flight, now)) is not None:
                self._log_change(before, reason, now)
        self._wake()

    def _shrink(self, generation: int, reason: str) -> None:
        before = self.limit.allowed
        if self.limit.decrease(generation):
            self._log_change(before, reason, self._clock())

    def _log_change(self, before: int, reason: str, now: float) -> None:
        """Each change of the limit; growth at info at most every 10 s (it comes in
        steps while syncd finds the DAM's capacity), the rest at debug."""
        after = self.limit.allowed
        floor = self.limit.floor_rtt
        fields = {
            "concurrency": f"{before}→{after}",
            "reason": reason,
            "rtt_floor_ms": round(floor * 1000, 1) if floor is not None else None,
        }
        if reason != "grow" or now - self._logged_at >= 10.0 or after == self.limit.maximum:
            self._logged_at = now
            log.info("concurrency_changed", **fields)
        else:
            log.debug("concurrency_changed", **fields)

    def _on_rate_limited(
        self, exc: RateLimited, generation: int, epoch: int, what: str
    ) -> tuple[float, float]:
        """Learn from a rate-limit signal; returns how long this request alone waits before
        its retry (0 when a pause of every request covers it), and how long every request
        pauses (0: none)."""
        self.rate_limited += 1
        now = self._clock()
        retry_after = exc.retry_after
        before = self.limit.allowed
        decreased = self.limit.decrease(generation)
        # A 429, or a 503 that says when to come back, is a quota: learn its rate. A bare
        # 503 may be an overloaded or failing node; pausing and fewer parallel requests
        # answer that, without slowing every later request.
        quota = exc.quota
        rate = self.learned.rate
        if quota:
            rate = self.learned.limited(now, fresh=epoch == self._epoch)
            if rate is not None:
                self._set_rate(rate, now)
        if self.fleet is not None and self.fleet.reachable:
            # The fleet's rate (its slow start's, before a limit is learned) spaces this
            # host's requests; this host's own counts only its share of them.
            rate = self.fleet.pacing
        own_wait, wait = 0.0, None
        if (
            quota
            and rate is not None
            and (retry_after is None or retry_after <= _OWN_RETRY_AFTER_S)
        ):
            # A rate is known (or was just learned) and spaces every request: a short
            # Retry-After (often a whole second, the header's smallest unit) is this
            # request's own wait, not a stop for all, which would waste the quota.
            own_wait = retry_after if retry_after is not None else self.backoff.delay(0, self._rng)
        elif retry_after is not None:
            # A one-shot run must not stall for an hour on one header; the retry limit
            # still applies after the pause.
            wait = min(retry_after, MAX_PAUSE_S)
        elif decreased:
            wait = self.backoff.delay(self._limited_streak, self._rng)
            self._limited_streak += 1
        if wait is not None:
            self._pause_until = max(self._pause_until, now + wait)
            self.learned.paused(self._pause_until)
        if wait is not None or own_wait:
            self.waits += 1
        if decreased or wait is not None:
            log.warning(
                "rate_limited",
                wait_s=round(wait if wait is not None else own_wait, 2),
                everyone=wait is not None,
                concurrency=f"{before}→{self.limit.allowed}",
                rate_per_s=round(rate, 1) if rate is not None else None,
                retry_after=retry_after is not None,
                request=what,
            )
        return own_wait, wait or 0.0

    def _set_rate(self, rate: float, now: float) -> None:
        interval = max(self._cap_interval, 1.0 / rate)
        if interval > self._interval:
            # Slower: requests already spaced for the old rate queue again at the new one.
            self._epoch += 1
            self._next_start = now + interval
        self._interval = interval

    async def _wait_for_slot(self) -> None:
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self._wake()  # a wake-up this cancelled request cannot use goes on
            else:
                self._waiters.remove(event)
            raise

    def _wake(self) -> None:
        """Wake as many waiting requests as there are free slots."""
        free = self.limit.allowed - self._in_flight
        while free > 0 and self._waiters:
            self._waiters.popleft().set()
            free -= 1


def _nothing() -> None:
    pass
