"""sd_notify over a real unix datagram socket, the watchdog interval, the liveness rule,
and the supervise loop that pings (or withholds pings) on a real event loop."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import replace
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from structlog.testing import capture_logs

from syncd.config.schema import load_config
from syncd.engine.upload import Uploader
from syncd.errors import AuthError, most_telling
from syncd.local.walk import Walker
from syncd.service.systemd import Liveness, Notifier, status_line, supervise, watchdog_interval
from tests.conftest import KEY, write
from tests.harness import (
    NotifySocket,
    Pulse,
    config,
    daemon_in_process,
    make_files,
    notify_socket,
    running_daemon,
)


async def received(listener: NotifySocket, n: int) -> list[dict[str, str]]:
    with anyio.fail_after(5):
        while len(listener.messages) < n:
            await listener.pulse.wait()
    return listener.messages


def test_without_notify_socket_nothing_is_sent():
    n = Notifier(env={})
    assert not n.enabled
    n.ready("x")  # must not raise, must not need a socket
    n.watchdog()
    n.close()


def test_relative_or_odd_socket_values_are_ignored():
    assert not Notifier(env={"NOTIFY_SOCKET": "relative/path"}).enabled
    assert not Notifier(env={"NOTIFY_SOCKET": "vsock:2:1234"}).enabled


async def test_messages_reach_a_path_socket(short_dir):
    async with notify_socket(short_dir) as listener:
        n = Notifier(env={"NOTIFY_SOCKET": listener.address})
        assert n.enabled
        n.ready("watching 1 folder")
        n.status("busy")
        n.reloading()
        n.stopping()
        n.watchdog()
        n.extend(60)
        msgs = await received(listener, 6)
        n.close()
    assert msgs[0] == {"READY": "1", "STATUS": "watching 1 folder"}
    assert msgs[1] == {"STATUS": "busy"}
    assert msgs[2]["RELOADING"] == "1"
    assert int(msgs[2]["MONOTONIC_USEC"]) > 0
    assert msgs[3]["STOPPING"] == "1"
    assert msgs[4] == {"WATCHDOG": "1"}
    assert msgs[5] == {"EXTEND_TIMEOUT_USEC": "60000000"}
    assert listener.sequence() == ["READY", "RELOADING", "STOPPING"]


async def test_messages_reach_an_abstract_socket():
    listener = NotifySocket(f"@syncd-test-{uuid.uuid4().hex}", Pulse())
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(listener.pump)
            n = Notifier(env={"NOTIFY_SOCKET": listener.address})
            n.ready("ok")
            assert (await received(listener, 1))[0]["READY"] == "1"
            n.close()
            tg.cancel_scope.cancel()
    finally:
        listener.close()


def test_a_vanished_supervisor_is_logged_once_and_never_raises(short_dir, capsys):
    path = short_dir / "gone.sock"
    n = Notifier(env={"NOTIFY_SOCKET": str(path)})
    n.watchdog()
    n.watchdog()
    n.close()
    out = capsys.readouterr().out
    assert out.count("notify_failed") == 1


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WATCHDOG_USEC": "2000000"}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}, 1.0),
        ({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}, None),  # someone else's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_usec(env, expected):
    assert watchdog_interval(env) == expected


def test_only_a_busy_daemon_without_progress_is_wedged():
    live = Liveness(stall_s=10.0)
    live.beat(now=100.0)
    assert not live.wedged(now=200.0)  # idle: waiting for events is not a wedge
    live.busy = True
    assert not live.wedged(now=110.0)
    assert live.wedged(now=110.5)
    live.beat(now=110.6)
    assert not live.wedged(now=111.0)


def test_status_line_names_the_queue_the_last_sync_and_the_failures():
    text = status_line(folders=2, queued=5, in_flight=3, last_sync=None, failures=1)
    assert text == "watching 2 folders; 5 queued, 3 uploading; last sync never; 1 failed"
    one = status_line(folders=1, queued=0, in_flight=0, last_sync=0.0 + 86400, failures=0)
    assert one.startswith("watching 1 folder; 0 queued; last sync 1970-01-0")


def test_status_line_says_how_the_fleet_paces():
    def line(reachable: bool, rate: float | None) -> str:
        fleet = {"fleet_reachable": reachable, "fleet_rate_per_s": rate}
        text = status_line(
            folders=1, queued=0, in_flight=0, last_sync=None, failures=0, fleet=fleet
        )
        return text.partition("0 failed")[2]

    assert line(True, 39.5) == "; fleet: shared, 39.5 requests/s"
    assert line(True, None) == "; fleet: shared, no rate limit seen"
    assert line(False, 39.5) == "; fleet: Redis unreachable, pacing alone"


async def test_supervise_pings_while_alive_and_withholds_while_wedged(short_dir):
    live = Liveness(stall_s=0.2)
    live.beat()
    ready = anyio.Event()
    ready.set()
    async with notify_socket(short_dir) as listener, anyio.create_task_group() as tg:
        n = Notifier(env={"NOTIFY_SOCKET": listener.address})

        def tick(now: float, wedged: bool) -> str:
            return "stalled" if wedged else "fine"

        tg.start_soon(supervise, n, live, tick, 0.02, ready)
        with anyio.fail_after(5):
            while listener.count("WATCHDOG") < 3:
                await listener.pulse.wait()
        assert listener.messages[0] == {"WATCHDOG": "1"}
        assert {"STATUS": "fine"} in listener.messages

        live.busy = True  # busy, and no beat from now on: wedged after 0.2 s
        with anyio.fail_after(5):
            while {"STATUS": "stalled"} not in listener.messages:
                await listener.pulse.wait()
        pings = listener.count("WATCHDOG")
        await anyio.sleep(0.2)  # ten intervals: no ping may come
        assert listener.count("WATCHDOG") == pings

        live.beat()  # progress again: the pings resume
        with anyio.fail_after(5):
            while listener.count("WATCHDOG") == pings:
                await listener.pulse.wait()
        tg.cancel_scope.cancel()
        n.close()


async def test_supervise_extends_the_start_timeout_until_ready(short_dir):
    live = Liveness(stall_s=60.0)
    live.beat()
    ready = anyio.Event()
    async with notify_socket(short_dir) as listener, anyio.create_task_group() as tg:
        n = Notifier(env={"NOTIFY_SOCKET": listener.address})
        tg.start_soon(supervise, n, live, lambda now, w: "starting", 0.02, ready)
        with anyio.fail_after(5):
            while listener.count("EXTEND_TIMEOUT_USEC") < 1:
                await listener.pulse.wait()
        assert listener.count("WATCHDOG") == 0  # not ready: no watchdog pings yet
        ready.set()
        with anyio.fail_after(5):
            while listener.count("WATCHDOG") < 1:
                await listener.pulse.wait()
        # Only one extension: they come every 10 s, and start-up ended long before.
        assert listener.count("EXTEND_TIMEOUT_USEC") == 1
        tg.cancel_scope.cancel()
        n.close()


# The real daemon


async def test_a_real_daemon_is_ready_only_after_its_first_reconcile(
    tmp_path, emulator, dam, short_dir, monkeypatch
):
    root = tmp_path / "root"
    make_files(root, 30)
    cfg = config(tmp_path, emulator, root)
    ready_seen_at_upload: list[bool] = []
    async with notify_socket(short_dir, dam.pulse) as listener:
        upload = emulator.store.upload

        def recording(*args: Any, **kw: Any) -> Any:
            ready_seen_at_upload.append("READY" in listener.sequence())
            return upload(*args, **kw)

        monkeypatch.setattr(emulator.store, "upload", recording)
        env = {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"}
        async with running_daemon(cfg, dam.pulse, env=env) as d:
            with anyio.fail_after(20):
                await d.until(lambda: "READY" in listener.sequence(), what="READY=1")
                # Every file of the first reconcile was committed before READY=1.
                assert ready_seen_at_upload == [False] * 30
                assert listener.count("EXTEND_TIMEOUT_USEC") >= 1  # sent while starting
                # The watcher was armed by then: a new file goes up.
                write(root / "late.txt", "late")
                await d.until(lambda: len(ready_seen_at_upload) == 31, what="late.txt")
                assert ready_seen_at_upload[-1] is True
                await d.until(lambda: listener.count("WATCHDOG") >= 3, what="watchdog pings")
                statuses = [m["STATUS"] for m in listener.messages if "STATUS" in m]
                assert any(s.startswith("watching 1 folder; 0 queued;") for s in statuses)
    # running_daemon sent SIGTERM and checked the exit code (0).
    assert listener.sequence() == ["READY", "STOPPING"]


async def test_a_wedged_worker_stops_the_watchdog_pings(
    tmp_path, emulator, dam, short_dir, monkeypatch
):
    root = tmp_path / "root"
    root.mkdir()
    cfg = load_config(config(tmp_path, emulator, root))
    release = anyio.Event()
    entered = anyio.Event()

    async def wedged(self: Any, *args: Any, **kw: Any) -> Any:
        entered.set()
        await release.wait()  # a worker stuck on something no timeout covers
        raise anyio.get_cancelled_exc_class()()

    monkeypatch.setattr(Uploader, "upload", wedged)
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
    async with notify_socket(short_dir, dam.pulse) as listener:
        with anyio.fail_after(20):
            async with daemon_in_process(cfg, listener, stall_s=0.3) as daemon:
                await daemon.ready.wait()
                while listener.count("WATCHDOG") < 3:
                    await listener.pulse.wait()
                write(root / "stuck.txt", "x")
                await entered.wait()
                while not any(m.get("STATUS", "").startswith("stalled") for m in listener.messages):
                    await listener.pulse.wait()
                pings = listener.count("WATCHDOG")
                await anyio.sleep(0.3)  # six intervals
                assert listener.count("WATCHDOG") == pings  # withheld: systemd will restart
                daemon.request_stop()
                release.set()
    assert listener.sequence() == ["READY", "STOPPING"]


async def test_a_long_busy_batch_that_makes_progress_keeps_the_pings(
    tmp_path, emulator, dam, short_dir, monkeypatch
):
    root = tmp_path / "root"
    root.mkdir()
    cfg = load_config(config(tmp_path, emulator, root, settle_ms=50))
    cfg = replace(cfg, dam=replace(cfg.dam, workers=1))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
    async with notify_socket(short_dir, dam.pulse) as listener:
        # Each request takes 0.15 s and 15 files take over 2 s: far longer than the
        # 0.5 s stall limit, but every request that ends is progress.
        with anyio.fail_after(30):
            async with daemon_in_process(cfg, listener, stall_s=0.5) as daemon:
                await daemon.ready.wait()
                emulator.options.slow_ms = 150
                make_files(root, 15)
                while len(dam.uploads) < 1:
                    await dam.pulse.wait()
                pings = listener.count("WATCHDOG")
                while len(dam.uploads) < 15:
                    await dam.pulse.wait()
                assert listener.count("WATCHDOG") >= pings + 20
                daemon.request_stop()
    assert not any(m.get("STATUS", "").startswith("stalled") for m in listener.messages)


async def test_sigterm_during_the_first_reconcile_stops_within_the_grace_period(
    tmp_path, emulator, dam, short_dir
):
    root = tmp_path / "root"
    make_files(root, 40)
    cfg = load_config(
        config(tmp_path, emulator, root, shutdown_grace_s=0.3), env={"SYNCD_API_KEY": KEY}
    )
    emulator.options.slow_ms = 100  # 40 files on one worker: about 4 s
    cfg = replace(cfg, dam=replace(cfg.dam, workers=1))
    async with notify_socket(short_dir, dam.pulse) as listener:
        with anyio.fail_after(10):
            async with daemon_in_process(cfg, listener) as daemon:
                while len(dam.uploads) < 3:
                    await dam.pulse.wait()
                daemon.request_stop()
                at_stop = len(dam.uploads)
            # run() returned: the reconcile got its 0.3 s and was cut short.
    assert at_stop < len(dam.uploads) < 40  # uploads went on during the grace period
    assert not daemon.ready.is_set()
    assert listener.sequence() == ["STOPPING"]  # never READY once stopping


async def test_a_long_walk_is_progress_too(tmp_path, emulator, dam, short_dir, monkeypatch):
    root = tmp_path / "root"
    make_files(root, 20)  # ten directories
    cfg = load_config(config(tmp_path, emulator, root))
    monkeypatch.setenv("WATCHDOG_USEC", "100000")  # a ping every 50 ms
    async with notify_socket(short_dir, dam.pulse) as listener:
        with anyio.fail_after(30):
            async with daemon_in_process(cfg, listener, stall_s=0.5) as daemon:
                await daemon.ready.wait()
                entries = Walker.entries

                def slow(self: Any, *args: Any) -> None:
                    time.sleep(0.15)  # an NFS server taking its time, in the scan's thread
                    entries(self, *args)

                monkeypatch.setattr(Walker, "entries", slow)
                with capture_logs() as logs:
                    daemon.request_reconcile()  # a 1.6 s walk, no request during it
                    while not any(e["event"] == "reconcile_done" for e in logs):
                        await listener.pulse.wait()
                daemon.request_stop()
    assert not any(m.get("STATUS", "").startswith("stalled") for m in listener.messages)
    assert not any(e["event"] == "watchdog_withheld" for e in logs)


async def test_the_fatal_error_of_a_task_group_is_the_one_that_matters():
    cancelled = anyio.get_cancelled_exc_class()
    key = AuthError("the DAM rejected the API key")
    other = RuntimeError("boom")
    group = BaseExceptionGroup("g", [BaseExceptionGroup("inner", [cancelled()]), other, key])
    assert most_telling(group, anyio.get_cancelled_exc_class()) is key
    assert (
        most_telling(BaseExceptionGroup("g", [cancelled(), other]), anyio.get_cancelled_exc_class())
        is other
    )
    only_cancelled = BaseExceptionGroup("g", [cancelled()])
    assert most_telling(only_cancelled, anyio.get_cancelled_exc_class()) is only_cancelled
