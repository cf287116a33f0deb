"""The state on disk: created private whatever the umask, and a full or read-only state
directory stops a run with one clear line and exit 1, never a traceback, losing nothing
(the next run, with room again, ends in an exact mirror without duplicates)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from syncd.state.lock import StateLock
from syncd.state.store import State
from tests.conftest import dam_tree, local_tree, run_syncd, write, write_config


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_state_and_its_directory_are_private_whatever_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        db = tmp_path / "a" / "b" / "state.db"
        with StateLock(db), State.open(db) as state:
            state.ensure_folder("/x", "/y")
        assert mode(db.parent) == 0o700
        assert mode(db.parent.parent) == 0o700
        assert mode(db) == 0o600
        assert mode(db.with_name("state.db.lock")) == 0o600
        for extra in db.parent.glob("state.db-*"):  # the WAL and its index, when present
            assert mode(extra) == 0o600
    finally:
        os.umask(old)


@asynccontextmanager
async def small_tmpfs(path: Path, size: str) -> AsyncIterator[None]:
    await anyio.Path(path).mkdir()
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    done = await anyio.run_process(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "syncd-test", str(path)], check=False
    )
    if done.returncode != 0:
        pytest.skip("this machine does not allow mounting a tmpfs")
    try:
        yield
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.run_process(["umount", str(path)], check=False)


def assert_one_clear_line(stderr: str) -> None:
    assert "Traceback" not in stderr
    assert "ExceptionGroup" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("syncd:")]
    assert len(lines) == 1, stderr[-2000:]


@pytest.mark.e2e
async def test_a_full_disk_stops_the_run_with_one_line_and_loses_nothing(tmp_path, emulator):
    root = tmp_path / "src"
    for i in range(3000):
        write(root / f"d{i % 20}" / f"a-rather-long-file-name-{i:05d}.txt", f"{i}")
    full = tmp_path / "full"
    async with small_tmpfs(full, "256k"):
        cfg = write_config(
            tmp_path / "c.toml",
            emulator,
            [{"local": str(root), "remote": "/m"}],
            state=full / "state.db",
        )
        with anyio.fail_after(60):
            run = await run_syncd("--config", cfg, "--initial-sync", "--log-format", "json")
        assert run.code == 1, run.stderr[-3000:]
        assert_one_clear_line(run.stderr)
        assert "state" in run.stderr
        assert len(emulator.files()) < 3000  # it stopped part of the way
        # With room again, the next run finishes: what landed is adopted, not sent again.
        state = full / "state.db"
        moved = tmp_path / "state.db"
        for f in full.iterdir():
            shutil.move(f, tmp_path / f.name)
    cfg = write_config(
        tmp_path / "c.toml", emulator, [{"local": str(root), "remote": "/m"}], state=moved
    )
    del state
    with anyio.fail_after(60):
        run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr[-3000:]
    assert dam_tree(emulator, "/m") == local_tree(root)  # fails on any duplicate


@pytest.mark.e2e
async def test_a_read_only_state_directory_gives_one_line(tmp_path, emulator):
    root = tmp_path / "src"
    write(root / "a.txt", "a")
    ro = tmp_path / "ro"
    async with small_tmpfs(ro, "1m"):
        cfg = write_config(
            tmp_path / "c.toml",
            emulator,
            [{"local": str(root), "remote": "/m"}],
            state=ro / "state.db",
        )
        with anyio.fail_after(30):
            assert (await run_syncd("--config", cfg, "--initial-sync")).code == 0
        write(root / "b.txt", "b")
        await anyio.run_process(["mount", "-o", "remount,ro", str(ro)])
        with anyio.fail_after(30):
            run = await run_syncd("--config", cfg, "--initial-sync")
        assert run.code == 1, run.stderr[-3000:]
        assert_one_clear_line(run.stderr)
