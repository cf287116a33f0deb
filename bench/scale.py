"""Benchmark of syncd at scale: trees of `--sizes` small files (256 B, 1,000 to a
folder), each synced once into a fresh emulator (`--no-content`), then synced again with
nothing changed, then watched by the daemon. Prints, per size: the initial sync's wall
time and peak RSS, the no-op re-run's wall time and peak RSS, the daemon's RSS once it
watches the tree (and its peak, start-up reconcile included), and `rclone sync
--dry-run` of the same tree to a local mirror of it (the same no-op question, asked of
the disk alone) measured in the same run. Then the RSS growth per file between the two
smallest sizes.

Targets (issue 12): peak RSS at 1,000,000 files at most 150 MB for both runs and the
idle daemon; growth from 40k to 200k files at most 0.10 KiB per file; the no-op at most
0.5x rclone's time.

Usage: python bench/scale.py [--sizes 40000,200000] [--repeat 2]
       (rclone on the PATH, or installed with apt-get install rclone)
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Emulator,
    Measured,
    make_tree,
    measure,
    peak_rss_mib,
    rss_mib,
    start_daemon,
    syncd_env,
    write_config,
    write_daemon_config,
)


def one_size(n: int, work: Path, repeat: int, rclone: str | None) -> dict[str, float]:
    root = work / f"tree-{n}"
    t0 = time.perf_counter()
    make_tree(root, n, 256, max(1, n // 1000))
    print(
        f"{n:,} files of 256 B in {max(1, n // 1000):,} folders (built in"
        f" {time.perf_counter() - t0:.0f} s)",
        flush=True,
    )
    emu = Emulator()
    try:
        cfg = write_config(work / f"c-{n}.toml", emu.url, root, work / f"state-{n}.db", None)
        cmd = [sys.executable, "-m", "syncd", "sync", "--config", str(cfg)]
        first = measure(cmd, syncd_env())
        if first.code != 0:
            raise RuntimeError(f"syncd failed: {first.stderr[-2000:]}")
        noops: list[Measured] = [measure(cmd, syncd_env()) for _ in range(repeat)]
        daemon = start_daemon(
            write_daemon_config(work / f"d-{n}.toml", emu.url, root, work / f"state-{n}.db")
        )
        try:
            time.sleep(2.0)  # past the start-up reconcile (logged ready), watching
            idle_rss, idle_peak = rss_mib(daemon.pid), peak_rss_mib(daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=120)
    finally:
        emu.close()
    out = {
        "first_s": first.wall,
        "first_rss": first.rss_mib,
        "noop_s": statistics.median(m.wall for m in noops),
        "noop_rss": max(m.rss_mib for m in noops),
        "idle_rss": idle_rss,
        "idle_peak": idle_peak,
    }
    line = (
        f"  syncd sync: {first.wall:7.1f} s, peak RSS {first.rss_mib:5.0f} MiB;"
        f" no-op re-run {out['noop_s']:6.2f} s, peak RSS {out['noop_rss']:5.0f} MiB;"
        f" daemon watching: RSS {idle_rss:4.0f} MiB (peak {idle_peak:4.0f})"
    )
    if rclone is not None:
        mirror = work / f"mirror-{n}"
        subprocess.run(["cp", "-a", str(root), str(mirror)], check=True)
        runs = [
            measure([rclone, "sync", "--dry-run", "-q", str(root), str(mirror)])
            for _ in range(repeat)
        ]
        out["rclone_s"] = statistics.median(m.wall for m in runs)
        line += (
            f"; rclone sync --dry-run {out['rclone_s']:6.2f} s"
            f" -> syncd's no-op = {out['noop_s'] / out['rclone_s']:.2f}x rclone (target <= 0.5x)"
        )
        shutil.rmtree(mirror)
    print(line, flush=True)
    shutil.rmtree(root)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sizes", default="40000,200000")
    p.add_argument("--repeat", type=int, default=2)
    args = p.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rclone = shutil.which("rclone")
    if rclone is None:
        print("rclone is not installed: its column is left out (apt-get install rclone)")
    results = {}
    with tempfile.TemporaryDirectory(prefix="syncd-bench-", dir="/var/tmp") as tmp:
        for n in sizes:
            results[n] = one_size(n, Path(tmp), args.repeat, rclone)
    if len(sizes) >= 2:
        a, b = sizes[0], sizes[1]
        for key, label in (
            ("first_rss", "initial sync"),
            ("noop_rss", "no-op re-run"),
            ("idle_peak", "daemon"),
        ):
            growth = (results[b][key] - results[a][key]) * 1024 / (b - a)
            print(
                f"RSS growth {a:,} -> {b:,} files, {label}: {growth:.2f} KiB per file"
                " (target <= 0.10)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
