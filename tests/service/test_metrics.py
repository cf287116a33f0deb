"""The Prometheus endpoint: a real daemon with `[metrics] listen`, scraped over HTTP
after real uploads, deletes, renames, a refused file and rate limits; and the counters
fed from a summary."""

from __future__ import annotations

import socket
import urllib.request
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from syncd.dam.pacer import Pacer
from syncd.engine.progress import Summary
from syncd.errors import ConfigError
from syncd.fleet.quota import FleetQuota
from syncd.model import Skip
from syncd.service.metrics import Metrics
from tests.conftest import write
from tests.harness import config, make_files, running_daemon


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as (name, labels) -> value."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def test_a_scrape_of_a_running_daemon(tmp_path, emulator, dam):
    root = tmp_path / "root"
    make_files(root, 20)
    write(root / "huge.bin", b"x" * 5000)
    emulator.options.max_upload_bytes = 4000  # refused: a failure by reason
    emulator.options.rate_limit = 15  # requests/s: the start-up burst meets 429s
    port = free_port()
    cfg = config(tmp_path, emulator, root)
    with cfg.open("a") as f:
        f.write(f'\n[metrics]\nlisten = "127.0.0.1:{port}"\n')
    url = f"http://127.0.0.1:{port}/metrics"
    async with running_daemon(cfg, dam.pulse) as d:
        with anyio.fail_after(60):
            (root / "d0/f00000.txt").unlink()
            (root / "d1/f00001.txt").rename(root / "d1/renamed.txt")
            write(root / "late.txt", "late")
            await d.until(lambda: "late.txt" in dam.uuids(), what="late.txt")
            await d.until(lambda: "d1/renamed.txt" in dam.uuids(), what="the rename")
            await d.until(lambda: "d0/f00000.txt" not in dam.uuids(), what="the delete")
            # The batches that did it are finished (their counts are in the metrics).
            await d.until(
                lambda: all(
                    d.total("sync_batch", k) >= 1 for k in ("uploaded", "moved", "deleted")
                ),
                what="the batches' ends",
            )
            m = await anyio.to_thread.run_sync(scrape, url)
    assert m[("syncd_uploads_total", (("kind", "new"),))] == 21
    assert m[("syncd_uploaded_bytes_total", ())] == sum(
        len(f"file {i}\n") for i in range(20)
    ) + len("late")
    assert m[("syncd_deletes_total", ())] == 1
    assert m[("syncd_moves_total", ())] == 1
    assert m[("syncd_failures_total", (("reason", "dam_rejected"),))] >= 1
    assert m[("syncd_rate_limited_total", ())] >= 1
    assert m[("syncd_pacer_waits_total", ())] >= 1
    assert m[("syncd_queue_depth", ())] == 0
    assert m[("syncd_queue_oldest_age_seconds", ())] == 0
    assert m[("syncd_folders", ())] == 1
    assert m[("syncd_last_sync_timestamp_seconds", ())] > 0
    # late.txt, the delete and both sides of the rename went through the queue.
    assert m[("syncd_sync_lag_seconds_count", ())] >= 3
    # Each lag is at least the settle window (100 ms).
    assert m[("syncd_sync_lag_seconds_sum", ())] >= 0.1 * m[("syncd_sync_lag_seconds_count", ())]


def test_counters_follow_the_summaries():
    metrics = Metrics()
    part = Summary(uploaded=3, updated=2, deleted=1, moved=4, bytes=1000)
    part.failed += [Skip("a", "x", kind="rate_limited"), Skip("b", "y", kind="unreadable")]
    metrics.record(part)
    metrics.record(Summary(uploaded=1))
    metrics.observe_lag([0.1, 3.0])
    reg = metrics.registry
    assert reg.get_sample_value("syncd_uploads_total", {"kind": "new"}) == 4
    assert reg.get_sample_value("syncd_uploads_total", {"kind": "replace"}) == 2
    assert reg.get_sample_value("syncd_moves_total") == 4
    assert reg.get_sample_value("syncd_uploaded_bytes_total") == 1000
    assert reg.get_sample_value("syncd_failures_total", {"reason": "rate_limited"}) == 1
    assert reg.get_sample_value("syncd_failures_total", {"reason": "unreadable"}) == 1
    assert reg.get_sample_value("syncd_sync_lag_seconds_bucket", {"le": "0.25"}) == 1
    assert reg.get_sample_value("syncd_sync_lag_seconds_count") == 2


def test_a_taken_port_is_a_clear_config_error(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"metrics.listen: cannot listen on 127.0.0.1:{port}"
        ):
            Metrics().serve("127.0.0.1", port)


def test_fleet_gauges_appear_with_a_fleet(tmp_path: Path):
    pacer = Pacer(8)
    metrics = Metrics(lambda: pacer)
    assert metrics.registry.get_sample_value("syncd_fleet_reachable") is None
    fleet = FleetQuota("redis://:pw-in-url@127.0.0.1:1/0", "proj", pacer.learned)
    pacer.fleet = fleet
    fleet.reachable, fleet.rate = False, None
    assert metrics.registry.get_sample_value("syncd_fleet_reachable") == 0
    fleet.reachable, fleet.rate = True, 39.5
    assert metrics.registry.get_sample_value("syncd_fleet_reachable") == 1
    assert metrics.registry.get_sample_value("syncd_fleet_rate") == 39.5
