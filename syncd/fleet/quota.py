"""`FleetQuota`: this host's side of the fleet's shared pacing in Redis, and what it does
when Redis cannot be reached.

The pacer asks `reserve()` before each request: Redis answers how long to wait for the
request's turn in the fleet's bucket (or for a fleet-wide pause). A refusal by the DAM
goes to `limited()`, which may lower the fleet's rate and pause every host.

Redis is a helper, never a dependency: every call is bounded by a short timeout, and when
one fails the host falls back to its own pacing (`reserve()` returns None) with one
warning, tries Redis again every `retry_s`, and says so once when it is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import anyio
import structlog

from syncd.config.schema import Config
from syncd.fleet.scripts import LIMITED, RESERVE
from syncd.redact import redact, url_password, without_password

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["FleetQuota", "RateRules", "fleet_quota"]

_MAX_RATE = 10_000.0
"""Requests/s the fleet's learned rate may probe up to; past it the slow start ends."""
_FIRST_RATE = 50.0
"""Requests/s a fleet with no limit seen yet starts at (its slow start)."""
_HORIZON_S = 0.05
"""How far ahead a turn in the fleet's bucket is handed out; further back, ask again."""

log = structlog.get_logger(__name__)


class RateRules(Protocol):
    """The constants the fleet learns its rate with: those of one host's
    `syncd.dam.limits.LearnedRate`."""

    @property
    def window_s(self) -> float: ...
    @property
    def under(self) -> float: ...
    @property
    def growth(self) -> float: ...
    @property
    def step_down(self) -> float: ...
    @property
    def floor(self) -> float: ...
    @property
    def min_samples(self) -> int: ...
    @property
    def measure_samples(self) -> int: ...
    @property
    def min_span_s(self) -> float: ...


def fleet_quota(config: Config, rules: RateRules) -> FleetQuota | None:
    """The fleet's quota as `[fleet]` configures it (its key prefix defaulting to the
    project token), or None without a `[fleet] redis_url`."""
    fleet = config.fleet
    if fleet.redis_url is None:
        return None
    prefix = fleet.key_prefix or config.dam.token
    return FleetQuota(fleet.redis_url, prefix, rules, ca_bundle=fleet.ca_bundle)


class FleetQuota:
    """The fleet's shared bucket, pause and learned rate, as seen from this host.

    Args:
        url: `[fleet] redis_url` (may hold a password: it is registered as a secret).
        prefix: `[fleet] key_prefix`, or the project token.
        rules: the learning constants (the host's own `LearnedRate`).
        ca_bundle: extra CA certificates for `rediss://`.
        timeout_s: the longest one Redis call may take before the host paces itself.
        retry_s: how often Redis is tried again while it is unreachable.
        longest_pause_s: the longest a fleet-wide pause may hold a request.
    """

    def __init__(
        self,
        url: str,
        prefix: str,
        rules: RateRules,
        *,
        ca_bundle: Path | None = None,
        timeout_s: float = 0.5,
        retry_s: float = 2.0,
        longest_pause_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # (The config refuses a user name without a password, "redis://secret@host".)
        if (password := url_password(url)) is not None:
            redact(password)
            redact(unquote(password))
        self.url = without_password(url)
        self._raw_url = url
        self.prefix = f"syncd:{{{prefix}}}:"
        self._ca_bundle = ca_bundle
        self._timeout_s = timeout_s
        self._retry_s = retry_s
        self._longest = longest_pause_s
        self._clock = clock
        self._rules = rules
        self._client: Redis | None = None
        self._reserve: Any = None
        self._limited: Any = None
        self.reachable: bool | None = None  # None: not tried yet
        self._retry_at = 0.0
        self._trying = False
        self.rate: float | None = None  # the fleet's learned rate, as last seen
        # The rate the fleet's turns are spaced at: the learned one, or the slow start's.
        self.pacing: float | None = None
        self.epoch = "0"

    def _connect(self) -> Redis:
        if self._client is None:
            from redis.asyncio import Redis  # imported only when a fleet is configured
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            extra: dict[str, Any] = {}
            if self._raw_url.lower().startswith("rediss://") and self._ca_bundle is not None:
                extra["ssl_ca_certs"] = str(self._ca_bundle)
            self._client = Redis.from_url(
                self._raw_url,
                socket_timeout=self._timeout_s,
                socket_connect_timeout=self._timeout_s,
                # One try: a failed call falls back to local pacing at once, and Redis is
                # tried again on syncd's own schedule.
                retry=Retry(NoBackoff(), 0),
                max_connections=1024,  # above [dam] workers' 256, with limited() besides
                client_name="syncd",
                decode_responses=True,
                **extra,
            )
            self._reserve = self._client.register_script(RESERVE)
            self._limited = self._client.register_script(LIMITED)
        return self._client

    def _usable(self) -> bool:
        """Whether to ask Redis now: it answered last time, or it is time to try again
        (one request tries; the others pace locally meanwhile)."""
        if self.reachable is not False:
            return True
        if self._trying or self._clock() < self._retry_at:
            return False
        self._trying = True
        return True

    async def reserve(self, cap_rate: float | None) -> float | None:
        """Seconds this host waits before its next request starts, its turn in the fleet's
        bucket taken; None when Redis cannot be reached (the caller paces itself)."""
        cap = 1.0 / cap_rate if cap_rate else 0.0
        r = self._rules
        while self._usable():
            try:
                with anyio.fail_after(self._timeout_s * 2):
                    self._connect()
                    wait, rate, epoch, reserved, pacing = await self._reserve(
                        keys=[self.prefix],
                        args=[cap, r.growth, self._longest, _MAX_RATE, _FIRST_RATE, _HORIZON_S],
                    )
            except Exception as exc:  # noqa: BLE001  # whatever Redis or TLS raise
                self._down(exc)
                return None
            finally:
                self._trying = False  # also when cancelled: the next request tries
            self._up()
            self.rate = float(rate) or None
            self.pacing = float(pacing) or None
            self.epoch = epoch
            if int(reserved):
                return max(0.0, float(wait))
            # A fleet-wide pause, or a turn further ahead than the horizon: ask again then.
            await anyio.sleep(float(wait))
        return None

    async def limited(self, epoch: str, pause_s: float) -> None:
        """The DAM refused a request that took its turn at `epoch`: let the fleet learn a
        lower rate, and pause every host for `pause_s` (0: only this host's request waits)."""
        if not self._usable():
            return
        r = self._rules
        args = [epoch, pause_s, r.window_s, r.under, r.step_down, r.floor, r.min_samples]
        try:
            with anyio.fail_after(self._timeout_s * 2):
                self._connect()
                rate, new_epoch = await self._limited(
                    keys=[self.prefix],
                    args=[*args, self._longest, r.measure_samples, r.min_span_s, _MAX_RATE],
                )
        except Exception as exc:  # noqa: BLE001
            self._down(exc)
            return
        finally:
            self._trying = False
        self._up()
        self.rate = float(rate) or None
        if self.rate is not None:
            self.pacing = self.rate
        self.epoch = new_epoch

    def _down(self, exc: BaseException) -> None:
        self._retry_at = self._clock() + self._retry_s
        if self.reachable is not False:
            self.reachable = False
            log.warning(
                "fleet_unreachable",
                key="fleet.redis_url",
                redis_url=self.url,
                error=f"{type(exc).__name__}: {exc}".rstrip(": "),
                action=f"pacing this host alone; trying Redis again every {self._retry_s:g} s",
            )

    def _up(self) -> None:
        if self.reachable is False:
            log.info("fleet_restored", redis_url=self.url)
        elif self.reachable is None:
            log.info("fleet_joined", redis_url=self.url, key_prefix=self.prefix)
        self.reachable = True

    def statistics(self) -> dict[str, Any]:
        """Fleet mode, Redis reachability and the shared rate, for status and metrics."""
        return {
            "fleet": "shared" if self.reachable is not False else "local (Redis unreachable)",
            "fleet_reachable": self.reachable is not False,
            "fleet_rate_per_s": round(self.rate, 2) if self.rate is not None else None,
        }

    async def peek(self) -> dict[str, Any]:
        """The fleet as Redis holds it now, without taking a turn (for `syncd status`);
        closes the connection after."""
        shown: dict[str, Any] = {"redis_url": self.url, "key_prefix": self.prefix}
        try:
            with anyio.fail_after(self._timeout_s * 2):
                rate, slow = await self._connect().mget(self.prefix + "rate", self.prefix + "ss")
        except Exception as exc:  # noqa: BLE001
            return {**shown, "reachable": False, "error": f"{type(exc).__name__}: {exc}"}
        finally:
            await self.aclose()
        return {
            **shown,
            "reachable": True,
            "rate_per_s": round(float(rate), 2) if rate else None,
            "slow_start_per_s": round(float(slow), 2) if slow and not rate else None,
        }

    async def aclose(self) -> None:
        """Close the connections to Redis."""
        client, self._client = self._client, None
        if client is not None:
            with anyio.move_on_after(self._timeout_s * 2, shield=True):
                await client.aclose()
