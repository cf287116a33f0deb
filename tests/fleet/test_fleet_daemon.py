"""The daemon in a fleet: a reload adds, changes and removes `[fleet]` while it runs, its
systemd status says how it paces, and a password in `redis_url` never reaches its log or
its status. The real daemon, a real redis-server and the emulator over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from syncd.emulator import Emulator
from tests.conftest import dam_tree, write, write_config
from tests.daemon.test_reload import reload
from tests.harness import notify_socket, running_daemon
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

PASSWORD = "fleet-pass-8d1e2c"


def daemon_config(tmp_path: Path, emu: Emulator, fleet: dict[str, Any] | None) -> Path:
    return write_config(
        tmp_path / "syncd.toml",
        emu,
        [{"local": str(tmp_path / "root"), "remote": "/fleet"}],
        sync={"settle_ms": 100},
        fleet=fleet,
    )


async def test_a_reload_joins_leaves_and_changes_the_fleet(
    tmp_path: Path, emulator: Emulator, dam: Any, short_dir: Path, redis: RedisServer
) -> None:
    redis.command("CONFIG", "SET", "requirepass", PASSWORD)
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis.port}/0"
    write(tmp_path / "root/first.txt", "1")
    cfg = daemon_config(tmp_path, emulator, None)
    async with (
        notify_socket(short_dir, dam.pulse) as listener,
        running_daemon(cfg, dam.pulse, env={"NOTIFY_SOCKET": listener.address}) as d,
    ):
        with anyio.fail_after(60):
            await d.until(lambda: "first.txt" in dam_tree(emulator, "/fleet"), what="first")
            assert not d.named("fleet_joined")

            # Join: the next upload takes its turn in the fleet's bucket.
            daemon_config(tmp_path, emulator, {"redis_url": url})
            done = await reload(d, listener)
            assert done["event"] == "reload_done"
            assert d.named("dam_client_replaced")[-1]["pacer_rebuilt"] is True
            write(tmp_path / "root/second.txt", "2")
            await d.until(lambda: d.named("fleet_joined"), what="fleet_joined")
            await d.until(lambda: "second.txt" in dam_tree(emulator, "/fleet"), what="second")
            await d.until(
                lambda: any("fleet: shared" in m.get("STATUS", "") for m in listener.messages),
                what="the fleet in STATUS=",
            )

            # Change: a Redis that is not there; syncing goes on, paced alone.
            redis.stop()
            daemon_config(tmp_path, emulator, {"redis_url": url, "key_prefix": "other"})
            assert (await reload(d, listener))["event"] == "reload_done"
            write(tmp_path / "root/third.txt", "3")
            await d.until(lambda: "third.txt" in dam_tree(emulator, "/fleet"), what="third")
            await d.until(lambda: d.named("fleet_unreachable"), what="fleet_unreachable")
            warning = d.named("fleet_unreachable")[-1]
            assert warning["key"] == "fleet.redis_url"
            assert warning["redis_url"] == f"redis://:***@127.0.0.1:{redis.port}/0"
            await d.until(
                lambda: any("Redis unreachable" in m.get("STATUS", "") for m in listener.messages),
                what="the fallback in STATUS=",
            )

            # Leave: no fleet, no more talk of it.
            daemon_config(tmp_path, emulator, None)
            assert (await reload(d, listener))["event"] == "reload_done"
            seen = len(d.events)
            write(tmp_path / "root/fourth.txt", "4")
            await d.until(lambda: "fourth.txt" in dam_tree(emulator, "/fleet"), what="fourth")
            assert not [e for e in d.events[seen:] if e["event"].startswith("fleet_")]
    shown = "\n".join(d.lines) + repr(listener.messages)
    assert PASSWORD not in shown
