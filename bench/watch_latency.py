"""Benchmark of the daemon's change latency: from a file's close to its commit on the DAM.

An idle daemon watches a folder; 4 KiB files are written one at a time, and each upload's
commit is timed inside the emulator (same process and clock as the writer). Prints p50,
p95 and p99, the settle window they include, and a bare upload's round trip measured in
the same run as the baseline.

Usage: python bench/watch_latency.py [--files 100] [--settle-ms 300]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import KEY, TOKEN, start_daemon, write_daemon_config
from syncd.dam.client import DamClient
from syncd.dam.pacer import Pacer
from syncd.emulator import serve


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def bench(files: int, settle_ms: int) -> None:
    async with serve(token=TOKEN, key=KEY, content="none") as emu:
        committed: dict[str, float] = {}
        arrived = anyio.Event()
        upload = emu.store.upload

        def timed(folder: str, name: str, *args: Any, **kwargs: Any) -> Any:
            nonlocal arrived
            stored = upload(folder, name, *args, **kwargs)
            committed[name] = time.monotonic()
            arrived.set()
            return stored

        emu.store.upload = timed  # type: ignore[method-assign,assignment]
        with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
            work = Path(tmp)
            root = work / "watched"
            root.mkdir()
            cfg = write_daemon_config(
                work / "c.toml", emu.url, root, work / "state.db", settle_ms=settle_ms
            )
            proc = await anyio.to_thread.run_sync(start_daemon, cfg)
            try:
                latencies = []
                for i in range(files):
                    name = f"file-{i:04d}.bin"
                    with open(root / name, "wb") as f:  # noqa: ASYNC230 - timing the close
                        f.write(os.urandom(4096))
                    closed = time.monotonic()
                    with anyio.fail_after(10):
                        while name not in committed:
                            await arrived.wait()
                            arrived = anyio.Event()
                    latencies.append(committed[name] - closed)
                    await anyio.sleep(0.05)  # an idle daemon between writes
            finally:
                proc.send_signal(signal.SIGTERM)
                await anyio.to_thread.run_sync(proc.wait)
            async with DamClient(emu.url, TOKEN, KEY, Pacer(1)) as dam:
                rtts = []
                for i in range(20):
                    t0 = time.monotonic()
                    await dam.upload("/rtt", f"r{i}.bin", lambda: os.urandom(4096), stream=False)
                    rtts.append(time.monotonic() - t0)
    ms = [x * 1000 for x in latencies]
    settle = settle_ms
    rtt = statistics.median(rtts) * 1000
    print(f"{files} files of 4 KiB, one at a time, settle window {settle} ms")
    print(
        f"close → DAM commit: p50 {pct(ms, 50):.0f} ms, p95 {pct(ms, 95):.0f} ms,"
        f" p99 {pct(ms, 99):.0f} ms"
    )
    print(f"targets: p50 <= {300 + settle} ms, p99 <= {1000 + settle} ms (300 ms / 1 s + settle)")
    print(
        f"beyond the settle window: p50 {pct(ms, 50) - settle:.0f} ms;"
        f" a bare upload round trip (baseline, same run): {rtt:.1f} ms"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--settle-ms", type=int, default=300)
    args = p.parse_args()
    anyio.run(bench, args.files, args.settle_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
