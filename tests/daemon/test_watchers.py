"""The daemon's watched folders: a watcher restarted (its root came back) is armed again
and asks for a reconcile; a folder that cannot be watched stops the start clearly."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
import watchfiles.main

from syncd.config.schema import load_config
from syncd.daemon.lifecycle import Daemon
from syncd.daemon.queue import Key
from syncd.daemon.watchers import Watchers
from syncd.errors import ConfigError
from syncd.state.store import State
from tests.conftest import KEY
from tests.harness import config


async def test_a_restarted_watcher_is_armed_again_and_asks_for_a_reconcile(tmp_path, emulator):
    root = tmp_path / "root"
    folder = load_config(config(tmp_path, emulator, root)).folders[0]
    noted: list[Key] = []
    rearmed = anyio.Event()
    seen = anyio.Event()

    def note(keys: Any) -> None:
        noted.extend(keys)
        seen.set()

    with State.open(tmp_path / "state.db") as state:
        watchers = Watchers(state, note, rearmed.set)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                watchers.bind(tg)
                await watchers.start(folder)
                (watched,) = watchers.folders.values()
                watched.stop.set()  # what the root guard does when the root is replaced
                await rearmed.wait()  # after the first backoff step (1 s)
                (root / "a.txt").write_text("a")
                await seen.wait()
                watchers.stop_all()
    assert [path for _, path in noted] == ["a.txt"]


async def test_a_folder_that_cannot_be_watched_stops_the_start_clearly(
    tmp_path, emulator, monkeypatch
):
    root = tmp_path / "root"
    cfg = load_config(config(tmp_path, emulator, root))

    def rust_notify(*args: Any) -> Any:
        # Tests run as root, who reads everything: the kernel's answer is simulated.
        raise PermissionError(f'Permission denied (os error 13) about ["{root}/private"]')

    monkeypatch.setattr(watchfiles.main, "RustNotify", rust_notify)
    daemon = Daemon(cfg, KEY, handle_signals=False)
    with anyio.fail_after(10), pytest.raises(ConfigError, match=rf"^{root}: cannot watch it: "):
        await daemon.run()  # raised as itself (exit 78), not inside an exception group
