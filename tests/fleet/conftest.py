"""A real redis-server on loopback for the fleet tests (`tests.redis_server`)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_server import RedisServer, redis_binary


def need_redis() -> None:
    """Skip without redis-server, unless under CI, where `.ci/run` installs it."""
    if redis_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed, and CI must test the fleet against it")
        pytest.skip("redis-server is not installed")


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    need_redis()
    server = RedisServer(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()
