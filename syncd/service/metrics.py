"""The daemon's Prometheus metrics: what it counts, and the optional `/metrics` endpoint
(`[metrics] listen`).

Counters are fed once per finished batch or reconcile from its `Summary`, so the upload
path pays nothing per file. Gauges that change all the time (the queue) are set by the
daemon's once-a-second status tick. The pacer's counters are read at scrape time. The
HTTP endpoint is prometheus-client's own server, in a thread; it reads only metric
objects (thread-safe) and plain integers, never the daemon's live structures.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from syncd.dam.pacer import Pacer
from syncd.engine.progress import Summary
from syncd.errors import ConfigError

__all__ = ["LAG_BUCKETS", "Metrics"]

log = structlog.get_logger(__name__)

# From "as fast as the settle window allows" to "stuck behind a rate limit".
LAG_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class _PacerCollector(Collector):
    """The pacer's own counters, read when scraped (the pacer may be replaced by a reload,
    so it is looked up each time)."""

    def __init__(self, pacer: Callable[[], Pacer | None]) -> None:
        self._pacer = pacer

    def collect(self) -> Iterator[Any]:
        pacer = self._pacer()
        if pacer is None:
            return
        stats = pacer.statistics()
        yield CounterMetricFamily(
            "syncd_pacer_waits",
            "Times the DAM's rate limit made requests wait (all of them, or the refused one)",
            value=stats["waits"],
        )
        yield CounterMetricFamily(
            "syncd_rate_limited",
            "Requests the DAM answered with a rate limit (429 or 503)",
            value=stats["rate_limited"],
        )
        yield GaugeMetricFamily(
            "syncd_pacer_concurrency", "Requests the pacer allows at once now", stats["concurrency"]
        )
        if "fleet_reachable" in stats:  # [fleet] is set
            yield GaugeMetricFamily(
                "syncd_fleet_reachable",
                "1 while the fleet's Redis answers (shared pacing), 0 while this host paces alone",
                float(stats["fleet_reachable"]),
            )
            rate = stats["fleet_rate_per_s"]
            yield GaugeMetricFamily(
                "syncd_fleet_rate",
                "The request rate the fleet learned from the DAM's 429s (NaN: none seen)",
                float("nan") if rate is None else rate,
            )


class Metrics:
    """One daemon's metrics, in a registry of its own (tests run several daemons)."""

    def __init__(self, pacer: Callable[[], Pacer | None] = lambda: None) -> None:
        r = self.registry = CollectorRegistry()
        self.uploads = Counter(
            "syncd_uploads", "Files uploaded to the DAM", ["kind"], registry=r
        )  # kind: new | replace
        self.deletes = Counter("syncd_deletes", "Assets deleted from the DAM", registry=r)
        self.moves = Counter("syncd_moves", "Assets moved or renamed on the DAM", registry=r)
        self.bytes = Counter("syncd_uploaded_bytes", "Bytes uploaded to the DAM", registry=r)
        self.failures = Counter(
            "syncd_failures", "Files that could not be synced, by reason", ["reason"], registry=r
        )
        self.queue_depth = Gauge(
            "syncd_queue_depth", "Paths waiting to settle or being synced", registry=r
        )
        self.queue_oldest = Gauge(
            "syncd_queue_oldest_age_seconds",
            "Age of the oldest path still waiting or being synced (0 when none)",
            registry=r,
        )
        self.lag = Histogram(
            "syncd_sync_lag_seconds",
            "From a path's first filesystem event to the DAM commit of its batch",
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.last_sync = Gauge(
            "syncd_last_sync_timestamp_seconds",
            "Unix time of the last batch or reconcile that finished",
            registry=r,
        )
        self.folders = Gauge("syncd_folders", "Folders being watched", registry=r)
        r.register(_PacerCollector(pacer))
        self._server: Any = None

    def record(self, part: Summary) -> None:
        """Count a finished batch or reconcile."""
        if part.uploaded:
            self.uploads.labels("new").inc(part.uploaded)
        if part.updated:
            self.uploads.labels("replace").inc(part.updated)
        self.deletes.inc(part.deleted)
        self.moves.inc(part.moved)
        self.bytes.inc(part.bytes)
        for failure in part.failed:
            self.failures.labels(failure.kind).inc()
        self.last_sync.set(time.time())

    def observe_lag(self, lags: Iterable[float]) -> None:
        """Each path's event-to-commit time."""
        for lag in lags:
            self.lag.observe(lag)

    def serve(self, host: str, port: int, *, source: Path | str = "") -> None:
        """Serve `/metrics` on host:port until `close()`; `source` is the config file,
        for the message.

        Raises:
            ConfigError: the address cannot be bound (in use, or not on this host).
        """
        try:
            self._server, _ = start_http_server(port, host, registry=self.registry)
        except OSError as exc:
            where = f"{source}: " if source else ""
            raise ConfigError(
                f"{where}metrics.listen: cannot listen on {host}:{port} ({exc.strerror}); "
                "pick a free port on this host, or remove [metrics] to turn it off"
            ) from None

    @property
    def address(self) -> tuple[str, int] | None:
        """Where `/metrics` is served (the real port when 0 was asked for)."""
        if self._server is None:
            return None
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def move(
        self, old: tuple[str, int] | None, new: tuple[str, int] | None, source: Path | str
    ) -> None:
        """Follow a reload's new `[metrics] listen`; a port in use is logged, and the rest
        of the new config still applies."""
        if new == old:
            return
        self.close()
        if new is not None:
            try:
                self.serve(*new, source=source)
            except ConfigError as exc:
                log.error("metrics_unavailable", error=str(exc))

    def close(self) -> None:
        """Stop the endpoint."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
