"""Benchmark of an idle daemon: the CPU it uses while watching a large tree in which
nothing changes (target: at most 1% of one core with 100,000 files watched). The idle
cost of the same process before the watchers start is not separable, so the baseline
printed beside it is a bare `sleep` process measured in the same run.

Usage: python bench/idle.py [--files 100000] [--seconds 30]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import (
    Emulator,
    cpu_seconds,
    make_tree,
    measure,
    start_daemon,
    syncd_env,
    write_config,
    write_daemon_config,
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--seconds", type=float, default=30.0)
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="syncd-bench-") as tmp:
        work = Path(tmp)
        tree = work / "tree"
        make_tree(tree, args.files, 4096, 100)
        emu = Emulator()
        try:
            cfg = write_config(work / "one.toml", emu.url, tree, work / "s.db", 8)
            first = measure(
                [sys.executable, "-m", "syncd", "--config", str(cfg), "--initial-sync"],
                syncd_env(),
            )
            assert first.code == 0, first.stderr[-2000:]
            cfg = write_daemon_config(work / "d.toml", emu.url, tree, work / "s.db")
            daemon = start_daemon(cfg)
            baseline = subprocess.Popen(["sleep", str(args.seconds + 5)])
            try:
                time.sleep(1.0)  # let the start-up reconcile's last work drain
                d0, b0 = cpu_seconds(daemon.pid), cpu_seconds(baseline.pid)
                time.sleep(args.seconds)
                d1, b1 = cpu_seconds(daemon.pid), cpu_seconds(baseline.pid)
            finally:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(timeout=60)
                baseline.kill()
                baseline.wait()
        finally:
            emu.close()
    share = 100 * (d1 - d0) / args.seconds
    print(f"{args.files} files watched, {args.seconds:.0f} s idle")
    print(f"daemon CPU: {d1 - d0:.2f} s = {share:.2f}% of one core (target <= 1%)")
    print(f"baseline (a sleeping process): {100 * (b1 - b0) / args.seconds:.2f}%")
    print(f"(pid {os.getpid()} measured by /proc; clock ticks of 1/{os.sysconf('SC_CLK_TCK')} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
