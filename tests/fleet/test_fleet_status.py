"""`syncd status` with `[fleet]`: the real command reads the fleet's shared rate from a
real redis-server, says when Redis cannot be reached, and never shows its password."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncd.emulator import Emulator
from tests.conftest import TOKEN, run_syncd, write_config
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

PASSWORD = "status-pass-41c9"


def status_config(tmp_path: Path, emulator: Emulator, redis: RedisServer) -> Path:
    (tmp_path / "root").mkdir()
    url = f"redis://:{PASSWORD}@127.0.0.1:{redis.port}/0"
    return write_config(
        tmp_path / "syncd.toml",
        emulator,
        [{"local": str(tmp_path / "root"), "remote": "/s"}],
        fleet={"redis_url": url},
    )


async def test_status_shows_the_fleets_rate_and_its_absence(
    tmp_path: Path, emulator: Emulator, redis: RedisServer
) -> None:
    redis.command("CONFIG", "SET", "requirepass", PASSWORD)
    cfg = status_config(tmp_path, emulator, redis)
    shown_url = f"redis://:***@127.0.0.1:{redis.port}/0"

    idle = await run_syncd("status", "--config", cfg)
    assert f"fleet:  {shown_url} (keys syncd:{{{TOKEN}}}:*): shared, idle" in idle.stdout

    redis.command("-a", PASSWORD, "SET", f"syncd:{{{TOKEN}}}:rate", "39.5")
    learned = await run_syncd("status", "--config", cfg)
    assert "shared, learned rate 39.5 requests/s" in learned.stdout
    as_json = json.loads((await run_syncd("status", "--json", "--config", cfg)).stdout)
    assert as_json["fleet"]["rate_per_s"] == 39.5
    assert as_json["fleet"]["redis_url"] == shown_url

    redis.stop()
    gone = await run_syncd("status", "--config", cfg)
    assert gone.code == 0, gone.stderr
    assert ": Redis unreachable (" in gone.stdout
    assert "each host paces itself" in gone.stdout
    for run in (idle, learned, gone):
        assert PASSWORD not in run.stdout + run.stderr
