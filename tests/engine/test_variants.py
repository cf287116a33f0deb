"""End to end under every reading of the DAM's undocumented behaviour (docs/dam-api.md
§12): the real `syncd` against the emulator switched to each variant, crossed with each naming
rule and same-name policy, under mixed faults that include connections dropped after the
DAM committed an upload. Each case ends with an exact mirror and no duplicate; renamed,
moved and swapped files keep their uuids; and a later `--initial-sync` and `--verify`
upload, replace and delete nothing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

from syncd.emulator import Emulator, serve
from syncd.engine.match import derived_name
from syncd.state.store import State
from tests.conftest import KEY, TOKEN, dam_tree, local_tree, run_syncd, write, write_config

pytestmark = pytest.mark.e2e

FILES = 500
FAULTS: dict[str, Any] = {
    "error_rate": 0.03,
    "reset_before_commit_rate": 0.03,
    "reset_after_commit_rate": 0.1,
    "error_body_rate": 0.02,
}
FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.2, "max_attempts": 10}

VARIANTS = [
    pytest.param({}, id="defaults"),
    pytest.param({"q_match": "both"}, id="q-name-and-info-name"),
    pytest.param({"q_match": "words"}, id="q-words"),
    pytest.param({"q_match": "ignored"}, id="q-ignored"),
    pytest.param({"rename_info_name": "rewritten"}, id="rename-rewrites-info-name"),
    pytest.param({"updated_after": "exact"}, id="updated-after-exact"),
    pytest.param({"updated_after": "ignored"}, id="updated-after-ignored"),
    pytest.param({"sort": "honoured"}, id="sort-honoured"),
    pytest.param({"page_drift": True}, id="pages-drift"),
    pytest.param({"listing_sha1": False}, id="no-sha1-in-listings"),
    pytest.param({"noop_conflict": False}, id="no-op-rename-succeeds"),
    pytest.param({"listing_lag_s": 0.4}, id="listings-lag"),
]
POLICIES = [
    pytest.param({"naming": "keep", "same_name": "override"}, id="keep-override"),
    pytest.param({"naming": "keep", "same_name": "version"}, id="keep-version"),
    pytest.param({"naming": "keep", "same_name": "refuse"}, id="keep-refuse"),
    pytest.param({"naming": "suffix"}, id="suffix"),
    pytest.param({"naming": "uuid"}, id="uuid-names"),
]


def build(root: Path, n: int = FILES) -> Path:
    for i in range(n):
        write(root / f"d{i % 10}" / f"f{i:04d}.jpg", os.urandom(64 + i % 200))
    return root


def edit(root: Path) -> dict[str, str]:
    """Renames, moves, a swap, content edits, deletes and additions. Returns new path →
    old path for every file that moved (its asset must keep its uuid)."""
    moved: dict[str, str] = {}
    for i in range(40, 60):  # renames in place
        old = f"d{i % 10}/f{i:04d}.jpg"
        new = f"d{i % 10}/renamed-{i:04d}.jpg"
        (root / old).rename(root / new)
        moved[new] = old
    (root / "moved").mkdir()
    for i in range(60, 70):  # moves into another folder
        old = f"d{i % 10}/f{i:04d}.jpg"
        new = f"moved/f{i:04d}.jpg"
        (root / old).rename(root / new)
        moved[new] = old
    a, b = "d1/f0071.jpg", "d1/f0081.jpg"  # a swap through a temporary name
    (root / a).rename(root / "d1/tmp.jpg")
    (root / b).rename(root / a)
    (root / "d1/tmp.jpg").rename(root / b)
    moved[a], moved[b] = b, a
    for i in range(100, 110):  # content edits
        write(root / f"d{i % 10}" / f"f{i:04d}.jpg", os.urandom(333))
    for i in range(110, 115):
        (root / f"d{i % 10}" / f"f{i:04d}.jpg").unlink()
    for i in range(5):
        write(root / "new" / f"n{i}.jpg", os.urandom(100 + i))
    return moved


def uuids(emu: Emulator) -> dict[str, str]:
    prefix = "/m/"
    return {r.client_path[len(prefix) :]: r.uuid for r in emu.files()}


def assert_mirror(emu: Emulator, root: Path) -> None:
    expected = local_tree(root)
    assert dam_tree(emu, "/m") == expected  # dam_tree fails on a duplicate
    assert len(emu.files()) == len(expected)
    for r in emu.files():
        # Stored under the name syncd gave it, or one the naming rule made of it.
        assert derived_name(r.name, r.client_name), (r.name, r.client_name)


async def sync(cfg: Path, *args: str) -> dict[str, Any]:
    run = await run_syncd("--config", cfg, "--initial-sync", *args)
    assert run.code == 0, run.stderr[-4000:]
    return run.summary


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("variant", VARIANTS)
async def test_mirror_identity_and_no_duplicates(tmp_path, variant, policy):
    async with serve(token=TOKEN, key=KEY, seed=11, **FAULTS, **variant, **policy) as emu:
        root = build(tmp_path / "src")
        lag = variant.get("listing_lag_s", 0)
        cfg = write_config(
            tmp_path / "c.toml",
            emu,
            [{"local": str(root), "remote": "/m"}],
            dam={**FAST, "listing_lag_s": 2 * lag},
        )
        with anyio.fail_after(60):
            await sync(cfg)
        assert_mirror(emu, root)
        before = uuids(emu)

        moved = edit(root)
        with anyio.fail_after(60):
            await sync(cfg)
        assert_mirror(emu, root)
        after = uuids(emu)
        assert {new: after[new] for new in moved} == {
            new: before[old] for new, old in moved.items()
        }

        emu.configure(dict.fromkeys(FAULTS, 0.0))  # the checks below count every request
        with anyio.fail_after(60):
            again = await sync(cfg)
            verified = await sync(cfg, "--verify")
        for summary in (again, verified):
            assert (summary["uploaded"], summary["updated"], summary["deleted"]) == (0, 0, 0)
            assert summary["moved"] == 0
        assert uuids(emu) == after
        assert_mirror(emu, root)


async def test_a_rename_replayed_from_a_stale_state_is_not_a_failure(tmp_path):
    """Defect 3: a crash between the DAM's rename and the state write. The state is
    restored to before the rename; the next run must find the rename done, not park it."""
    async with serve(token=TOKEN, key=KEY) as emu:
        root = build(tmp_path / "src", 10)
        state = tmp_path / "state.db"
        cfg = write_config(tmp_path / "c.toml", emu, [{"local": str(root), "remote": "/m"}])
        await sync(cfg)
        copies = tmp_path / "copies"
        copies.mkdir()
        for f in tmp_path.glob("state.db*"):
            shutil.copy2(f, copies / f.name)
        uuid = uuids(emu)["d0/f0000.jpg"]
        (root / "d0/f0000.jpg").rename(root / "d0/f0000-2.jpg")
        await sync(cfg)
        for f in tmp_path.glob("state.db*"):
            f.unlink()
        for f in copies.iterdir():
            shutil.copy2(f, tmp_path / f.name)
        for _ in range(2):  # and the run after that stays clean too
            summary = await sync(cfg)
            assert summary["failed"] == 0
            assert summary["uploaded"] == 0
        assert uuids(emu)["d0/f0000-2.jpg"] == uuid
        assert_mirror(emu, root)
        with State.open(state, readonly=True) as s:
            folder_id = s.folder_id(str(root.resolve()), "/m")
            assert s.parked(folder_id) == []
            assert s.known(folder_id)["d0/f0000-2.jpg"].uuid == uuid


async def test_strays_that_listings_showed_too_late_go_at_the_next_run(tmp_path):
    """Suffix names and drops after commit, with listings lagging longer than syncd was
    told: the first run leaves strays it could not see yet, journalled; the next run
    deletes them."""
    async with serve(
        token=TOKEN,
        key=KEY,
        seed=5,
        naming="suffix",
        reset_after_commit_rate=0.2,
        listing_lag_s=3.0,
    ) as emu:
        root = build(tmp_path / "src", 100)
        cfg = write_config(
            tmp_path / "c.toml",
            emu,
            [{"local": str(root), "remote": "/m"}],
            dam={**FAST, "listing_lag_s": 0},
        )
        with anyio.fail_after(60):
            await sync(cfg)
        assert emu.stats.faults["reset_after_commit"] > 5
        extra = len(emu.files()) - 100
        assert extra > 0  # re-sends the lagging listings hid made second assets
        with State.open(tmp_path / "state.db", readonly=True) as s:
            assert s.unsure(s.folder_id(str(root.resolve()), "/m"))
        await anyio.sleep(3.2)  # the emulator's lag: until its listings show everything
        emu.configure({"reset_after_commit_rate": 0.0})
        with anyio.fail_after(60):
            second = await sync(cfg)
        assert second["strays_deleted"] == extra
        assert_mirror(emu, root)


@pytest.mark.parametrize(
    "policy",
    [{"naming": "keep", "same_name": "refuse"}, {"naming": "suffix"}],
    ids=["refuse-upload-aside", "suffix"],
)
async def test_a_replacement_cut_short_is_finished_not_duplicated(tmp_path, policy):
    """The new content of a changed file landed (under a temporary name, with refuse)
    but the reply was lost and no retry was left: the next run takes that asset, retires
    the outdated one, and leaves one asset under the file's own name."""
    async with serve(token=TOKEN, key=KEY, seed=2, **policy) as emu:
        root = build(tmp_path / "src", 3)
        cfg = write_config(
            tmp_path / "c.toml",
            emu,
            [{"local": str(root), "remote": "/m"}],
            dam={**FAST, "max_attempts": 1},
        )
        await sync(cfg)
        write(root / "d0" / "f0000.jpg", b"new content")
        emu.configure({"reset_after_commit_rate": 1.0, "listing_lag_s": 30})
        with anyio.fail_after(60):
            cut = await run_syncd("--config", cfg, "--initial-sync")
        assert cut.code == 1  # parked: its outcome was unknown and no retry was left
        assert len(emu.files()) == 4  # the new content landed beside the old
        emu.configure({"reset_after_commit_rate": 0.0, "listing_lag_s": 0})
        with anyio.fail_after(60):
            summary = await sync(cfg)
        assert summary["uploaded"] + summary["updated"] == 0  # nothing sent again
        assert_mirror(emu, root)
