"""Talking to systemd: the sd_notify protocol over `$NOTIFY_SOCKET`, the watchdog
interval, and the liveness rule that decides whether a watchdog ping may be sent.

Everything here is a no-op outside systemd (no `$NOTIFY_SOCKET`), so the daemon calls it
unconditionally. A lost datagram is never an error: systemd's protocol is best effort,
and a daemon must not stop syncing because its supervisor went away.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

__all__ = ["Liveness", "Notifier", "status_line", "supervise", "watchdog_interval"]

_TICK_S = 1.0  # STATUS= (and whatever `tick` refreshes) at most this often
_EXTEND_EVERY_S = 10.0
EXTEND_S = 60.0  # each EXTEND_TIMEOUT_USEC= during start-up grants this much

log = structlog.get_logger(__name__)


def _address(value: str) -> str | None:
    """The socket address of `$NOTIFY_SOCKET`: a path, or `@name` for an abstract socket."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # vsock and other forms are not used for services


class Notifier:
    """Sends sd_notify messages. Without `$NOTIFY_SOCKET` every method does nothing.

    Args:
        env: the environment (`os.environ` when None).
    """

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._address = _address(env.get("NOTIFY_SOCKET", ""))
        self._sock: socket.socket | None = None
        self._warned = False
        self.sent: list[str] = []  # the message kinds sent, for the closing log line

    @property
    def enabled(self) -> bool:
        """Whether syncd runs under a supervisor that listens."""
        return self._address is not None

    def send(self, *fields: str) -> None:
        """Send one datagram of `KEY=value` lines."""
        if self._address is None:
            return
        if self._sock is None:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)
        try:
            self._sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            # A full socket buffer or a supervisor that went away must not stop syncing.
            if not self._warned:
                log.warning("notify_failed", error=str(exc), socket=os.fsdecode(self._address))
                self._warned = True

    def ready(self, status: str) -> None:
        """Start-up (or a reload) is complete."""
        self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> None:
        """A configuration reload begins; `ready()` ends it."""
        # MONOTONIC_USEC lets Type=notify-reload (systemd 253+) match the reply to its signal.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}", "STATUS=reloading the configuration")

    def stopping(self) -> None:
        """Shutdown begins."""
        self.send("STOPPING=1", "STATUS=stopping: finishing the uploads in flight")

    def status(self, text: str) -> None:
        """A one-line status for `systemctl status`."""
        self.send(f"STATUS={text}")

    def extend(self, seconds: float) -> None:
        """Still starting, and making progress: allow `seconds` more before systemd's
        start timeout (the first reconcile of a large tree takes longer than any fixed
        `TimeoutStartSec`)."""
        self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> None:
        """The process is alive and making progress."""
        self.send("WATCHDOG=1")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, or None when systemd
    expects no pings (no watchdog, or `$WATCHDOG_PID` names another process)."""
    env = os.environ if env is None else env
    pid = env.get("WATCHDOG_PID", "")
    if pid and pid != str(os.getpid()):
        return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


@dataclass(slots=True)
class Liveness:
    """Whether the workers are alive: idle, or busy and still making progress.

    `beat()` is called whenever work moves on (a DAM request completes, a chunk of an
    upload is read, a batch starts or ends). A busy daemon whose last beat is older than
    `stall_s` is wedged: its watchdog pings stop so systemd restarts it. `stall_s` must
    exceed the longest legitimate quiet spell: one request timeout plus the longest
    rate-limit pause.
    """

    stall_s: float
    last: float = 0.0
    busy: bool = False

    def beat(self, now: float | None = None) -> None:
        """Work moved on."""
        self.last = time.monotonic() if now is None else now

    def wedged(self, now: float) -> bool:
        """True when busy with no progress for longer than `stall_s`."""
        return self.busy and now - self.last > self.stall_s


def status_line(
    *,
    folders: int,
    queued: int,
    in_flight: int,
    last_sync: float | None,
    failures: int,
    state: str = "watching",
    fleet: Mapping[str, Any] | None = None,
) -> str:
    """The `STATUS=` text: what `systemctl status syncd` shows under "Status:". `fleet`:
    the pacer's fleet figures, when `[fleet]` is set."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(last_sync)) if last_sync else "never"
    work = f"{queued} queued" + (f", {in_flight} uploading" if in_flight else "")
    plural = "" if folders == 1 else "s"
    line = f"{state} {folders} folder{plural}; {work}; last sync {when}; {failures} failed"
    if fleet is not None:
        if not fleet["fleet_reachable"]:
            line += "; fleet: Redis unreachable, pacing alone"
        elif (rate := fleet["fleet_rate_per_s"]) is not None:
            line += f"; fleet: shared, {rate:g} requests/s"
        else:
            line += "; fleet: shared, no rate limit seen"
    return line


async def supervise(
    notifier: Notifier,
    liveness: Liveness,
    tick: Callable[[float, bool], str],
    interval: float | None,
    ready: anyio.Event,
) -> None:
    """Forever: ping the watchdog every `interval` while `liveness` allows it, and send
    `STATUS=` whenever the text `tick(now, wedged)` returns changes. Until `ready` is
    set, extend systemd's start timeout instead, under the same liveness rule.

    The pings come from this task, in the event loop: a blocked loop stops them as
    surely as a wedged worker does.
    """
    every = min(_TICK_S, interval) if interval else _TICK_S
    shown, warned, extended = "", False, -math.inf
    while True:
        now = time.monotonic()
        wedged = liveness.wedged(now)
        if wedged and not warned:
            log.error(
                "watchdog_withheld",
                stalled_s=round(now - liveness.last, 1),
                hint="busy with no progress; systemd restarts syncd when its watchdog expires",
            )
        warned = wedged
        if not ready.is_set():
            if not wedged and now - extended >= _EXTEND_EVERY_S:
                notifier.extend(EXTEND_S)
                extended = now
        elif interval and not wedged:
            notifier.watchdog()
        if (text := tick(now, wedged)) != shown:
            notifier.status(text)
            shown = text
        await anyio.sleep(every)
