"""Benchmark of a burst: 20,000 files created at once under a running daemon (as extracting
an archive does), against `--initial-sync` of the same files measured in the same run.

Prints both throughputs, their ratio (target: the burst converges at >= 80% of
`--initial-sync`'s files/s) and the daemon's peak RSS.

Usage: python bench/burst.py [--files 20000]
"""

from __future__ import annotations

import argparse
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=20_000)
    args = p.parse_args()
    n = args.files
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        make_tree(tree, n, 4096, 100)
        emu = Emulator()
        try:
            cfg = write_config(work / "one.toml", emu.url, tree, work / "one.db", 8)
            cmd = [sys.executable, "-m", "syncd", "--config", str(cfg), "--initial-sync"]
            one_shot = measure(cmd, syncd_env())
            assert one_shot.code == 0, one_shot.stderr[-2000:]
            emu.control("reset")

            watched = work / "watched"
            watched.mkdir()
            cfg = write_daemon_config(work / "d.toml", emu.url, watched, work / "d.db")
            daemon = start_daemon(cfg)
            try:
                t0 = time.monotonic()
                # "Extract the archive": every file created anew, folder by folder.
                for folder in sorted(tree.iterdir()):
                    shutil.copytree(folder, watched / folder.name)
                created = time.monotonic() - t0
                while True:
                    stats = emu.control("stats")
                    assert isinstance(stats, dict)
                    if stats["files_count"] >= n:
                        break
                    time.sleep(0.1)
                burst_s = time.monotonic() - t0
                rss = peak_rss_mib(daemon.pid)
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
        finally:
            emu.close()
    one_rate, burst_rate = n / one_shot.wall, n / burst_s
    print(f"{n} files of 4 KiB in 100 folders")
    print(f"--initial-sync   : {one_rate:6.0f} files/s ({one_shot.wall:.1f} s)")
    print(
        f"burst, daemon    : {burst_rate:6.0f} files/s ({burst_s:.1f} s, of which"
        f" {created:.1f} s creating the files)"
    )
    print(f"ratio            : {burst_rate / one_rate:.2f} (target >= 0.80)")
    print(f"daemon peak RSS  : {rss:.0f} MiB (initial sync: {one_shot.rss_mib:.0f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
