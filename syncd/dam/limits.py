"""The pacer's arithmetic, as pure classes that take the time as an argument: retry
backoff (`Backoff`), how many requests may be in flight (`ConcurrencyLimit`) and the
request rate a rate-limited DAM accepts (`LearnedRate`). `syncd.dam.pacer` does the
waiting; everything here is tested as data.
"""

from __future__ import annotations

import random
import statistics
from collections import deque
from dataclasses import dataclass, field

__all__ = ["Backoff", "ConcurrencyLimit", "LearnedRate"]


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
class ConcurrencyLimit:
    """How many requests may be in flight, following the DAM (after TCP Vegas and
    Netflix's concurrency-limits).

    Round-trip times are taken in windows of at least `min_samples` requests (and half
    the limit) that last at least `min_window_s`. A window's median is compared with the
    floor, the lowest window median seen lately:

    * within `tolerance` of the floor, while the window used at least half the limit,
      the DAM is not queueing: the limit doubles per window until the first sign of a
      queue or pushback (a slow start, as TCP's: a DAM 100 ms away takes syncd from 16
      to 64 requests in flight in about 0.2 s), then grows by `growth` per window;
    * above `queued` times the floor, requests wait in a queue somewhere: the limit
      shrinks in proportion, by half at most;
    * in between it holds.

    A rate-limit signal (429, 503) or a timeout halves the limit, once per round: requests
    that started before the last decrease cannot cause another one, so eight simultaneous
    429s halve it once, not eight times. The floor is measured afresh every
    `floor_windows` windows, so a path that became slower for good is not read as a
    queue forever.
    """

    maximum: int
    minimum: int = 1
    initial: int = 16
    tolerance: float = 1.25
    queued: float = 2.0
    growth: float = 0.25
    min_samples: int = 5
    min_window_s: float = 0.05
    floor_windows: int = 50
    limit: float = 0.0
    generation: int = 0
    floor_rtt: float | None = None
    _window: list[float] = field(default_factory=list)
    _window_start: float | None = None
    _used: int = 0
    _windows: int = 0
    _slow_start: bool = True

    def __post_init__(self) -> None:
        self.minimum = max(1, min(self.minimum, self.maximum))
        if not self.limit:
            self.limit = float(min(self.maximum, max(self.minimum, self.initial)))

    @property
    def allowed(self) -> int:
        """Requests allowed in flight now."""
        return max(self.minimum, int(self.limit))

    def sample(self, rtt: float, in_flight: int, now: float) -> str | None:
        """One request's round trip, with the requests in flight when it ended. Returns
        why the limit changed ("grow", "queueing"), or None when it did not."""
        if self._window_start is None:
            self._window_start = now
        self._window.append(rtt)
        self._used = max(self._used, in_flight)
        if (
            len(self._window) < max(self.min_samples, self.allowed // 2)
            or now - self._window_start < self.min_window_s
        ):
            return None
        median = statistics.median(self._window)
        used, self._used = self._used, 0
        self._window.clear()
        self._window_start = None
        self._windows += 1
        if self.floor_rtt is None or median < self.floor_rtt or self._windows > self.floor_windows:
            self.floor_rtt = median
            self._windows = 0
        before = self.allowed
        ratio = median / max(self.floor_rtt, 1e-6)
        if ratio > self.queued:
            self.limit = max(float(self.minimum), self.limit * max(0.5, self.queued / ratio))
            self._slow_start = False
            reason = "queueing"
        elif ratio <= self.tolerance and used * 2 >= before:
            factor = 2.0 if self._slow_start else 1.0 + self.growth
            self.limit = min(float(self.maximum), self.limit * factor + 1.0)
            reason = "grow"
        else:
            return None
        return reason if self.allowed != before else None

    def decrease(self, started_generation: int) -> bool:
        """Halve the limit for a rate-limit signal or a timeout; False when this round
        already did."""
        if started_generation < self.generation:
            return False
        self._slow_start = False
        self.limit = max(float(self.minimum), self.limit / 2.0)
        self.generation += 1
        return True


@dataclass
class LearnedRate:
    """The request rate a rate-limited DAM accepts, learned from its own answers.

    Unknown (no limit) until the first rate-limit signal, which sets a provisional rate
    from the requests accepted in the last `window_s` (an opening burst inflates it).
    Then the rate is measured, not guessed:

    * while the DAM keeps refusing, its bucket is empty at each refusal, so the requests
      accepted between the first refusal of the last `window_s` and this one, over the
      real time between them (at least `min_span_s`), are exactly its rate, whatever its
      burst size;
    * the rate is set `under` what was measured;
    * a refusal after a quiet spell sets it `under` the rate syncd was sending at, or
      lower, to what the last `window_s` of accepted requests show, but by `step_down`
      at most; unless the request was sent before the rate last changed (requests
      spaced for the old rate are not news);
    * while the DAM accepts, the rate probes upward by `growth` per second.

    A global pause (Retry-After, backoff) lets the DAM's bucket fill up again, so
    measurements start afresh after one (`paused`).
    """

    window_s: float = 2.0
    under: float = 0.97
    growth: float = 0.02
    step_down: float = 0.9
    floor: float = 0.5
    min_samples: int = 5  # to set a provisional rate
    measure_samples: int = 10  # to measure one: a count of n is off by 1/n
    min_span_s: float = 0.25
    rate: float | None = None
    _accepted: deque[float] = field(default_factory=deque)
    _refused: deque[float] = field(default_factory=deque)
    _valid_from: float = float("-inf")
    _last: float | None = None

    def accepted(self, now: float) -> None:
        """A request was accepted at `now`."""
        self._accepted.append(now)
        while self._accepted[0] < now - self.window_s:
            self._accepted.popleft()
        if self.rate is not None and self._last is not None:
            self.rate *= 1.0 + self.growth * max(0.0, now - self._last)
        self._last = now

    def paused(self, until: float) -> None:
        """Every request waits until `until`: measure afresh after it."""
        self._valid_from = max(self._valid_from, until)
        self._refused.clear()

    def limited(self, now: float, *, fresh: bool = True) -> float | None:
        """The DAM refused a request at `now` (`fresh`: one sent at the current rate);
        returns the new rate (None while too few requests were accepted lately to tell:
        then only pauses and concurrency act)."""
        self._last = now
        horizon = max(now - self.window_s, self._valid_from)
        while self._accepted and self._accepted[0] < now - self.window_s:
            self._accepted.popleft()
        while self._refused and self._refused[0] < horizon:
            self._refused.popleft()
        first = self._refused[0] if self._refused else None
        self._refused.append(now)
        if first is not None and now - first >= self.min_span_s:
            count = sum(1 for t in self._accepted if t > first)
            if count >= self.measure_samples:
                self.rate = max(self.floor, self.under * count / (now - first))
                return self.rate
        recent = [t for t in self._accepted if t > horizon]
        if self.rate is None:
            if len(recent) < self.min_samples:
                return None
            # Provisional: an opening burst reads high; the next refusals measure it.
            self.rate = max(self.floor, self.under * len(recent) / max(0.1, now - recent[0]))
        elif fresh:
            # The rate syncd was just sending at, over-read by whatever burst the DAM had
            # left: this refusal says it was too fast, so it goes `under` that at least,
            # and down to what was measured when syncd sent less (`step_down` at most).
            stepped = self.rate * self.step_down
            measured = self.rate * self.under
            if len(recent) >= self.measure_samples and now - recent[0] >= self.min_span_s:
                measured = min(measured, self.under * len(recent) / (now - recent[0]))
            self.rate = max(self.floor, stepped, measured)
        return self.rate
