"""Benchmark of a burst: 20,000 files created at once under a running daemon (as extracting
an archive does), against `--initial-sync` of the same files measured in the same run.

Prints both throughputs, their ratio (target: the burst converges at >= 80% of
`--initial-sync`'s files/s) and the daemon's peak RSS.

Usage: python bench/burst.py [--files 20000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Emulator,
    make_tree,
    measure,
    peak_rss_mib,
    start_daemon,
    syncd_env,
    write_config,
    write_daemon_config,
)


def round_trip(work: Path, tree: Path, n: int) -> tuple[float, float, float, float, float]:
    """One `--initial-sync` and one burst on the same files: (one-shot wall, one-shot RSS,
    burst wall, seconds spent creating the files, daemon peak RSS)."""
    emu = Emulator()
    try:
        for old in work.glob("*.db*"):
            old.unlink()
        cfg = write_config(work / "one.toml", emu.url, tree, work / "one.db", None)
        cmd = [sys.executable, "-m", "syncd", "--config", str(cfg), "--initial-sync"]
        one_shot = measure(cmd, syncd_env())
        assert one_shot.code == 0, one_shot.stderr[-2000:]
        emu.control("reset")
        watched = work / "watched"
        if watched.exists():
            shutil.rmtree(watched)
        watched.mkdir()
        cfg = write_daemon_config(work / "d.toml", emu.url, watched, work / "d.db")
        daemon = start_daemon(cfg)
        try:
            t0 = time.monotonic()
            # "Extract the archive": 20,000 new names appear as fast as the kernel makes
            # them. Hard links cost the writer almost no CPU, so the two cores measure
            # syncd and the DAM rather than the benchmark's own copying.
            for folder in sorted(tree.iterdir()):
                target = watched / folder.name
                target.mkdir()
                for f in folder.iterdir():
                    os.link(f, target / f.name)
            created = time.monotonic() - t0
            while True:
                stats = emu.control("stats")
                assert isinstance(stats, dict)
                if stats["files_count"] >= n:
                    break
                time.sleep(0.05)
            burst_s = time.monotonic() - t0
            rss = peak_rss_mib(daemon.pid)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
    finally:
        emu.close()
    return one_shot.wall, one_shot.rss_mib, burst_s, created, rss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=20_000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    n = args.files
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        make_tree(tree, n, 4096, 100)
        rounds = [round_trip(work, tree, n) for _ in range(args.repeat)]
    ratios = sorted(
        (one / burst, one, burst, created, rss) for one, _, burst, created, rss in rounds
    )
    ratio, one, burst, created, rss = ratios[(len(ratios) - 1) // 2]
    print(f"{n} files of 4 KiB in 100 folders; median of {args.repeat} rounds")
    print(f"--initial-sync   : {n / one:6.0f} files/s ({one:.1f} s)")
    print(
        f"burst, daemon    : {n / burst:6.0f} files/s ({burst:.1f} s, of which"
        f" {created:.1f} s creating the files)"
    )
    print(
        f"ratio            : {ratio:.2f} (target >= 0.80); all rounds:"
        f" {[round(r[0], 2) for r in ratios]}"
    )
    print(f"daemon peak RSS  : {rss:.0f} MiB (initial sync: {rounds[0][1]:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
