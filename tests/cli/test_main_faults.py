"""End-to-end under a hostile DAM: the real `syncd` against the emulator with every fault and
every project policy switched on, on a 500-file tree. Each run must converge to an exact
mirror (path and sha1), leave no duplicate asset, and exit 0; a second round of local
edits must converge too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from syncd.emulator import Emulator, serve
from tests.conftest import KEY, TOKEN, dam_tree, local_tree, run_syncd, write, write_config

FILES = 500
FAST_RETRIES = {"backoff_base_s": 0.02, "backoff_max_s": 0.5, "max_attempts": 8}


def build(root: Path, n: int = FILES) -> Path:
    for i in range(n):
        write(root / f"d{i % 10}" / f"f{i:04d}.jpg", os.urandom(64 + i % 200))
    return root


def edit(root: Path) -> None:
    """A second round: 20 changed, 10 deleted, 10 added."""
    for i in range(20):
        write(root / f"d{i % 10}" / f"f{i:04d}.jpg", os.urandom(300))
    for i in range(20, 30):
        (root / f"d{i % 10}" / f"f{i:04d}.jpg").unlink()
    for i in range(10):
        write(root / "new" / f"n{i}.jpg", os.urandom(100 + i))


def assert_mirror(emu: Emulator, root: Path) -> None:
    expected = local_tree(root)
    assert dam_tree(emu, "/m") == expected  # dam_tree fails on duplicate assets
    assert len(emu.files()) == len(expected)


async def converge(tmp_path: Path, emu: Emulator, **dam: Any) -> None:
    root = build(tmp_path / "src")
    cfg = write_config(
        tmp_path / "c.toml",
        emu,
        [{"local": str(root), "remote": "/m"}],
        dam={**FAST_RETRIES, **dam},
    )
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr[-3000:]
    assert_mirror(emu, root)
    edit(root)
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr[-3000:]
    assert_mirror(emu, root)


FAULTS = [
    pytest.param({"rate_limit": 400, "retry_after_style": "seconds"}, id="429-retry-after-seconds"),
    pytest.param({"rate_limit": 400, "retry_after_style": "date"}, id="429-retry-after-date"),
    pytest.param({"rate_limit": 400, "retry_after_style": "none"}, id="429-no-retry-after"),
    pytest.param({"error_rate": 0.1}, id="random-5xx"),
    pytest.param({"reset_before_commit_rate": 0.15}, id="reset-before-commit"),
    pytest.param({"reset_after_commit_rate": 0.15}, id="reset-after-commit"),
    pytest.param({"slow_ms": 15}, id="slow-responses"),
    pytest.param({"error_body_rate": 0.1}, id="200-with-error-body"),
    pytest.param(
        {
            "error_rate": 0.05,
            "reset_before_commit_rate": 0.05,
            "reset_after_commit_rate": 0.05,
            "error_body_rate": 0.05,
            "naming": "suffix",
        },
        id="everything-at-once-with-suffix-names",
    ),
]


@pytest.mark.e2e
@pytest.mark.parametrize("faults", FAULTS)
async def test_converges_under_fault(tmp_path, faults):
    async with serve(token=TOKEN, key=KEY, seed=7, **faults) as emu:
        await converge(tmp_path, emu)


POLICIES = [
    pytest.param({"naming": "keep", "same_name": "override"}, id="keep-override"),
    pytest.param({"naming": "keep", "same_name": "version"}, id="keep-new-version"),
    pytest.param({"naming": "keep", "same_name": "refuse"}, id="keep-refuse"),
    pytest.param({"naming": "suffix", "same_name": "override"}, id="random-suffix"),
    pytest.param({"naming": "uuid", "same_name": "refuse"}, id="uuid-names"),
    pytest.param({"same_asset_status": 200}, id="same-asset-as-200"),
    pytest.param({"size_as_int": True, "folder_trailing_slash": True}, id="legacy-shapes"),
]


@pytest.mark.e2e
@pytest.mark.parametrize("policy", POLICIES)
async def test_converges_under_policy(tmp_path, policy):
    async with serve(token=TOKEN, key=KEY, seed=3, **policy) as emu:
        await converge(tmp_path, emu)


@pytest.mark.e2e
async def test_refused_duplicates_are_adopted_without_a_second_copy(tmp_path):
    async with serve(token=TOKEN, key=KEY, duplicates="refuse") as emu:
        root = build(tmp_path / "src", 50)
        write(root / "copy" / "twin.jpg", (root / "d0" / "f0000.jpg").read_bytes())
        cfg = write_config(
            tmp_path / "c.toml", emu, [{"local": str(root), "remote": "/m"}], dam=FAST_RETRIES
        )
        run = await run_syncd("--config", cfg, "--initial-sync")
        assert run.code == 0, run.stderr[-3000:]
        assert len(emu.files()) == 50  # the twin is the same asset, not a second copy
        assert any(e["event"] == "identical_asset_elsewhere" for e in run.events)


@pytest.mark.e2e
async def test_exhausted_retries_park_files_then_a_later_run_finishes(tmp_path):
    async with serve(token=TOKEN, key=KEY, reset_before_commit_rate=1.0) as emu:
        root = build(tmp_path / "src", 20)
        cfg = write_config(
            tmp_path / "c.toml",
            emu,
            [{"local": str(root), "remote": "/m"}],
            dam={"backoff_base_s": 0.01, "backoff_max_s": 0.05, "max_attempts": 3},
        )
        run = await run_syncd("--config", cfg, "--initial-sync")
        assert run.code == 1
        failed = {e["path"] for e in run.events if e["event"] == "file_failed"}
        assert len(failed) == 20
        assert run.summary["failed"] == 20
        emu.configure({"reset_before_commit_rate": 0.0})
        run = await run_syncd("--config", cfg, "--initial-sync")
        assert run.code == 0, run.stderr[-3000:]
        assert_mirror(emu, root)


@pytest.mark.e2e
async def test_a_key_revoked_mid_run_exits_77_without_a_retry_storm(tmp_path):
    async with serve(token=TOKEN, key=KEY, slow_ms=5) as emu:
        root = build(tmp_path / "src", 400)
        cfg = write_config(tmp_path / "c.toml", emu, [{"local": str(root), "remote": "/m"}])
        revoked_at: list[int] = []
        commit = emu.store.upload

        def commit_then_revoke(*args: Any, **kwargs: Any) -> Any:
            # The 50th committed upload revokes the key, as an admin would mid-run.
            stored = commit(*args, **kwargs)
            if len(emu.store.all_files()) == 50:
                emu.revoke_key()
                revoked_at.append(sum(emu.stats.requests.values()))
            return stored

        emu.store.upload = commit_then_revoke  # type: ignore[method-assign]
        with anyio.fail_after(30):
            run = await run_syncd("--config", cfg, "--initial-sync")
        assert run.code == 77, run.stderr[-2000:]
        assert "rejected the API key" in run.stderr
        after = sum(emu.stats.requests.values()) - revoked_at[0]
        assert after <= 16  # the requests in flight, then nothing: no retries
        assert emu.files()  # what was committed before stays
