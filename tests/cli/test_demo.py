"""`syncd demo` runs end to end on a fresh machine: emulator, initial sync, edits, re-runs."""

from __future__ import annotations

import sys

import anyio
import pytest

pytestmark = pytest.mark.e2e


async def test_demo_runs_and_verifies_the_mirror(tmp_path):
    with anyio.fail_after(90):
        proc = await anyio.run_process(
            [sys.executable, "-m", "syncd", "demo", "--files", "40", "--workdir", str(tmp_path)],
            check=False,
        )
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    assert "uploaded 41, updated 0, deleted 0, skipped 0, failed 0" in out
    assert "uploaded 1, updated 1, deleted 1" in out
    assert "DAM mirrors the folder: yes" in out
    assert out.rstrip().endswith("demo finished: the DAM mirrors the folder")
    # The junk files of the sample were never uploaded, and the state lives in the workdir.
    assert (tmp_path / "state.db").exists()
