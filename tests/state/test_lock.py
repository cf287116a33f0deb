"""One syncd per state database: the lock, its holder's pid, and the real command
refusing a second writer while a daemon runs."""

from __future__ import annotations

import os

import anyio
import pytest

from syncd.errors import StateError
from syncd.state.lock import StateLock, holder, lock_path
from tests.conftest import run_syncd
from tests.harness import config, make_files, running_daemon


def test_a_second_lock_is_refused_and_names_the_holder(tmp_path):
    state = tmp_path / "sub" / "state.db"
    assert holder(state) is None  # no lock file yet
    with StateLock(state):
        assert holder(state) == os.getpid()
        with (
            pytest.raises(StateError, match=rf"another syncd \(pid {os.getpid()}\)"),
            StateLock(state),
        ):
            pass
    assert holder(state) is None  # released, and the pid is gone from the file
    assert lock_path(state).read_text() == ""
    with StateLock(state):  # free again
        pass


async def test_a_one_shot_run_is_refused_while_the_daemon_runs(tmp_path, emulator, dam):
    root = tmp_path / "root"
    make_files(root, 3)
    cfg = config(tmp_path, emulator, root)
    async with running_daemon(cfg, dam.pulse) as d:
        with anyio.fail_after(30):
            second = await run_syncd("--config", cfg, "--initial-sync")
            assert second.code == 1
            assert f"another syncd (pid {d.proc.pid}) is using the state database" in second.stderr
            # A dry run writes nothing, so it may look.
            dry = await run_syncd("--config", cfg, "--initial-sync", "--dry-run")
            assert dry.code == 0, dry.stderr
