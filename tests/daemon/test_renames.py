"""End to end: renames under the daemon keep every asset's uuid, also when the daemon is
killed halfway through a batch of renames (the DAM renamed some assets, the state
recorded none of it) and started again, against a DAM that keeps `info.name` as the
upload-time name and answers a no-op rename with 409 (the emulator's defaults)."""

from __future__ import annotations

import signal

import anyio
import pytest

from tests.conftest import write
from tests.harness import config, mirrored, running_daemon

pytestmark = pytest.mark.e2e

FILES = 400
RENAME = "PATCH /{token}/v4/files/{uuid}"


@pytest.mark.parametrize("naming", ["keep", "suffix"])
async def test_kill_9_during_renames_then_restart_keeps_every_uuid(tmp_path, emulator, dam, naming):
    emulator.configure({"naming": naming})
    root = tmp_path / "src"
    for i in range(FILES):
        write(root / "d" / f"photo-{i:03d}.jpg", f"picture {i}\n")
    cfg = config(tmp_path, emulator, root)
    async with running_daemon(cfg, dam.pulse) as d:
        with anyio.fail_after(30):
            await mirrored(d, dam, root)
        before = dam.uuids()
        uploads = len(dam.uploads)
        # A DAM with some latency, so the batch of renames is still running at the kill.
        emulator.configure({"slow_ms": 20})
        for i in range(FILES):
            (root / "d" / f"photo-{i:03d}.jpg").rename(root / "d" / f"renamed-{i:03d}.jpg")
        with anyio.fail_after(30):
            await d.until(lambda: dam.requests(RENAME) >= FILES // 5, what="some renames")
        await d.kill()
    if d.proc.returncode != -signal.SIGKILL:
        pytest.fail(f"exit code {d.proc.returncode}, not SIGKILL")
    done = dam.requests(RENAME)
    if done >= FILES:
        pytest.fail("the kill came too late to test anything")

    emulator.configure({"slow_ms": 0})
    async with running_daemon(cfg, dam.pulse, ready_within=40) as d:
        with anyio.fail_after(30):
            await mirrored(d, dam, root)
    after = dam.uuids()
    assert after == {f"d/renamed-{i:03d}.jpg": before[f"d/photo-{i:03d}.jpg"] for i in range(FILES)}
    assert len(dam.uploads) == uploads  # nothing was sent again
    assert dam.deleted == []
