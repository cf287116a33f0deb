"""End to end against a deliberately malicious DAM: the real `syncd --initial-sync` against
each `malice` mode of the emulator (syncd.emulator.malice), after a clean first run. Each
run must end in bounded time with a clear exit (1: the folder or its files failed; 0 is
allowed where retries may win), no Python traceback, a bounded peak RSS, nothing deleted
on the strength of a broken listing, and the key never shown."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from syncd.emulator import Emulator, serve
from tests.conftest import KEY, TOKEN, Run, run_syncd, write, write_config

pytestmark = pytest.mark.e2e

# Quick retries, and a 1 s timeout so a trickled upload fails its deadline in about a second.
DAM = {"backoff_base_s": 0.02, "backoff_max_s": 0.2, "max_attempts": 3, "timeout_s": 1.0}
# syncd alone peaks near 50 MiB on this tree; a body is capped at 16 MiB after
# decompression (the gzip bomb inflates to 1 GiB).
RSS_LIMIT_MIB = 150
# Runs the command in argv[2:] and writes the peak RSS of its process tree (KiB on Linux)
# to argv[1]: RUSAGE_CHILDREN of a fresh process holds just that command.
_MEASURE = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[2:])\n"
    "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
    "open(sys.argv[1], 'w').write(str(peak))\n"
    "sys.exit(code)\n"
)


def build(root: Path) -> Path:
    for i in range(4):
        write(root / f"d{i % 2}" / f"f{i}.jpg", os.urandom(200 + i))
    return root


async def measured_syncd(tmp_path: Path, *args: str | Path) -> tuple[Run, float, float]:
    """`run_syncd` under the RSS wrapper: the run, its peak RSS in MiB, its wall time."""
    peak = tmp_path / "peak_rss"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCD_")}
    env["SYNCD_API_KEY"] = KEY
    command = [sys.executable, "-c", _MEASURE, str(peak), sys.executable, "-m", "syncd"]
    t0 = time.monotonic()
    with anyio.fail_after(60):
        proc = await anyio.run_process([*command, *map(str, args)], env=env, check=False)
    took = time.monotonic() - t0
    stderr = proc.stderr.decode("utf-8", "replace")
    events = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    run = Run(proc.returncode, proc.stdout.decode("utf-8", "replace"), stderr, events)
    return run, int(peak.read_text()) / 1024, took


def assert_clean_exit(run: Run, codes: set[int]) -> None:
    assert run.code in codes, run.stderr[-3000:]
    assert "Traceback" not in run.stderr, run.stderr[-3000:]
    assert "Traceback" not in run.stdout
    assert KEY not in run.stdout
    assert KEY not in run.stderr


async def seeded(tmp_path: Path, emu: Emulator) -> tuple[Path, Path]:
    """A clean first run, then a local edit and a local delete for the hostile run."""
    root = build(tmp_path / "src")
    cfg = write_config(tmp_path / "c.toml", emu, [{"local": str(root), "remote": "/m"}], dam=DAM)
    run = await run_syncd("--config", cfg, "--initial-sync")
    assert run.code == 0, run.stderr[-3000:]
    assert len(emu.files()) == 4
    write(root / "d0" / "f0.jpg", os.urandom(300))
    (root / "d1" / "f1.jpg").unlink()
    return root, cfg


MODES = [
    # Writes refused with the key in the message: both files parked, key masked.
    pytest.param("echo_key", {1}, "file_failed", id="echo-key"),
    # The listing fails: the folder fails this run; nothing is uploaded or deleted.
    pytest.param("endless_pages", {1}, "folder_failed", id="endless-pages"),
    pytest.param("repeat_pages", {1}, "folder_failed", id="repeated-pages"),
    pytest.param("gzip_bomb", {1}, "folder_failed", id="gzip-bomb"),
    # The changed file's upload times out at its deadline on every attempt: parked.
    pytest.param("trickle", {1}, "file_failed", id="trickle"),
    # Some answers are unusable, retries may win: either exit, never a crash.
    pytest.param("wrong_types", {0, 1}, None, id="wrong-types"),
]


@pytest.mark.parametrize(("malice", "codes", "event"), MODES)
async def test_a_malicious_dam_cannot_hang_bloat_or_crash_syncd(
    tmp_path: Path, record_property: Any, malice: str, codes: set[int], event: str | None
) -> None:
    async with serve(token=TOKEN, key=KEY, seed=5) as emu:
        _, cfg = await seeded(tmp_path, emu)
        before = {r.uuid for r in emu.files()}
        emu.configure({"malice": malice})
        with anyio.fail_after(60):
            run, peak_mib, took = await measured_syncd(tmp_path, "--config", cfg, "--initial-sync")
        assert_clean_exit(run, codes)
        if event is not None:
            run.event(event)
        if event == "folder_failed":
            assert "larger than 16 MiB" in run.stderr or "does not end" in run.stderr
            assert {r.uuid for r in emu.files()} == before  # the deleted file's asset stays
        if malice == "echo_key":
            assert "request refused for key" in run.stderr  # the DAM's text, key masked
        assert peak_mib < RSS_LIMIT_MIB, peak_mib
        assert took < 30
        record_property("peak_rss_mib", round(peak_mib, 1))
        record_property("seconds", round(took, 2))
        sys.stderr.write(
            f"\n{malice}: exit {run.code}, {took:.2f} s, peak RSS {peak_mib:.0f} MiB\n"
        )
