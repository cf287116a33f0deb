"""Fault injection for the emulated API: a token-bucket rate limit with a configurable
`Retry-After`, random 5xx replies, HTTP 200 replies with an error body, and dropped
connections around an upload's commit. All draws come from one seedable generator."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from email.utils import formatdate

from syncd.emulator.model import EmulatorError
from syncd.emulator.options import Options

__all__ = ["Faults", "TokenBucket"]

_SERVER_ERRORS = (
    (500, "INTERNAL_ERROR", "injected internal server error"),
    (502, "BAD_GATEWAY", "injected bad gateway"),
    (503, "SERVICE_UNAVAILABLE", "injected service unavailable"),
)


class TokenBucket:
    """A token bucket whose rate and size may change between calls; a size of 0 means one
    second's worth (at least 1).

    Args:
        clock: monotonic seconds, injectable for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tokens: float | None = None  # None: full, set on first use
        self._last = clock()

    def take(self, rate: float, burst: float = 0.0) -> float:
        """Take one token at `rate` per second from a bucket of `burst` tokens.

        Returns:
            0 if a token was taken, else the seconds until one will be available.
        """
        now = self._clock()
        burst = max(1.0, burst or rate)
        tokens = burst if self._tokens is None else self._tokens
        tokens = min(burst, tokens + (now - self._last) * rate)
        self._last = now
        if tokens >= 1:
            self._tokens = tokens - 1
            return 0.0
        self._tokens = tokens
        return (1 - tokens) / rate

    def reset(self) -> None:
        """Refill the bucket."""
        self._tokens = None
        self._last = self._clock()


class Faults:
    """Decides, request by request, which fault (if any) to inject.

    Args:
        options: the live options holding the rates.
        rng: the seedable generator all draws come from.
        clock: monotonic seconds for the rate limiter.
        wall: wall-clock seconds, for `Retry-After` dates.
    """

    def __init__(
        self,
        options: Options,
        rng: random.Random,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.rng = rng
        self.bucket = TokenBucket(clock)
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}  # by key, with rate_limit_scope "key"
        # Its own generator: switching latency jitter on leaves the fault sequence as it was.
        self._jitter = random.Random(f"latency-{options.seed}")
        self._wall = wall

    def _chance(self, rate: float) -> bool:
        # No draw at all for a disabled fault, so turning one fault on does not shift the
        # sequence another seeded fault sees.
        return rate > 0 and self.rng.random() < rate

    def refill(self) -> None:
        """Refill every rate-limit bucket: the project's, and each key's."""
        self.bucket.reset()
        self._buckets.clear()

    def delay_s(self) -> float:
        """How long this request waits before it is handled: the DAM's distance."""
        base, jitter = self.options.slow_ms, self.options.jitter_ms
        if jitter > 0:
            base += self._jitter.uniform(-jitter, jitter)
        return max(0.0, base) / 1000

    def rate_limited(self, key: str = "") -> EmulatorError | None:
        """Return the 429 reply if this request (made with API key `key`) is over the rate
        limit, else None."""
        rate = self.options.rate_limit
        if rate <= 0:
            return None
        bucket = self.bucket
        if self.options.rate_limit_scope == "key":
            bucket = self._buckets.setdefault(key, TokenBucket(self._clock))
        wait = bucket.take(rate, self.options.rate_burst)
        if wait <= 0:
            return None
        seconds = max(1, math.ceil(wait))
        error = EmulatorError(
            429,
            "TOO_MANY_REQUESTS",
            f"rate limit of {rate:g} requests/s exceeded",
            "slow down and retry later",
        )
        style = self.options.retry_after_style
        if style == "seconds":
            error.headers["Retry-After"] = str(seconds)
        elif style == "date":
            # An HTTP-date has whole-second precision: round up so it is never early.
            error.headers["Retry-After"] = formatdate(
                math.ceil(self._wall()) + seconds, usegmt=True
            )
        return error

    def server_error(self) -> EmulatorError | None:
        """Return a random 5xx reply (no `Retry-After`, even on 503), or None."""
        if not self._chance(self.options.error_rate):
            return None
        status, code, msg = self.rng.choice(_SERVER_ERRORS)
        return EmulatorError(status, code, msg, "retry later")

    def error_body(self) -> EmulatorError | None:
        """Return an HTTP 200 reply whose body says `"status":"error"`, or None."""
        if not self._chance(self.options.error_body_rate):
            return None
        return EmulatorError(200, "INTERNAL_ERROR", "injected error in a 200 reply", "retry")

    def reset_before_commit(self) -> bool:
        """Whether to drop this upload's connection before storing the file."""
        return self._chance(self.options.reset_before_commit_rate)

    def reset_after_commit(self) -> bool:
        """Whether to drop this upload's connection after storing it, before replying."""
        return self._chance(self.options.reset_after_commit_rate)
